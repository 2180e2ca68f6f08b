"""Linux-compatible cookies: SipHash reference vectors, the public Linux vectors, key forms."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastopen import cookies
from fastopen.cookies import Key, KeyRing, Match, cookie_input, siphash24_fast, siphash24_py
from fastopen.errors import KeyFormatError

REF_KEY = bytes(range(16))
# SipHash-2-4 reference vectors (vectors.h of the reference implementation): message 00 01 .. n-1.
REF_VECTORS = {
    0: "310e0edd47db6f72",
    1: "fd67dc93c539f874",
    2: "5a4fa9d909806c0d",
    15: "e545be4961ca29a1",
    63: "724506eb4c328a95",
}
LINUX_KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
IMPLS = [pytest.param(siphash24_py, id="pure")]
if siphash24_fast is not None:
    IMPLS.append(pytest.param(siphash24_fast, id="siphashc"))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("length", "expected"), REF_VECTORS.items())
def test_siphash_reference_vectors(impl, length: int, expected: str) -> None:
    assert impl(REF_KEY, bytes(range(length))).to_bytes(8, "little").hex() == expected


def test_siphashc_is_in_use() -> None:
    assert siphash24_fast is not None
    assert cookies.siphash24 is siphash24_fast


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=80))
def test_pure_python_equals_siphashc(key: bytes, data: bytes) -> None:
    assert siphash24_fast is not None
    assert siphash24_py(key, data) == siphash24_fast(key, data)


@pytest.mark.parametrize(
    ("key", "client", "server", "cookie"),
    [
        (LINUX_KEY, "192.0.2.1", "192.168.0.1", "3021b9d889017eeb"),
        (LINUX_KEY, "fd3d:fa7b:d17d::1", "fd3d:0a0b:17d6::1", "c1d1e9742a47a9bc"),
        ("0-0-0-0", "192.0.2.1", "192.168.0.1", "b7c12350a90dc8f5"),
        # a v4-mapped peer on an IPv6 listener hashes the 4+4 form
        (LINUX_KEY, "::ffff:192.0.2.1", "::ffff:192.168.0.1", "3021b9d889017eeb"),
    ],
)
def test_linux_selftest_vectors(key: str, client: str, server: str, cookie: str) -> None:
    assert KeyRing.from_text(key).mint(client, server).hex() == cookie


def test_cookie_input_forms_agree() -> None:
    a, b = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.168.0.1")
    assert cookie_input(a, b) == cookie_input("192.0.2.1", "192.168.0.1") == a.packed + b.packed
    assert cookie_input(a.packed, b.packed) == a.packed + b.packed
    mapped = ipaddress.ip_address("::ffff:192.0.2.1").packed
    assert cookie_input(mapped, b.packed) == a.packed + b.packed
    with pytest.raises(ValueError, match="same family"):
        cookie_input("192.0.2.1", "fd00::1")
    with pytest.raises(ValueError, match="4 or 16"):
        cookie_input(b"\1\2\3", b.packed)


def test_key_text_words_are_little_endian() -> None:
    key = Key.from_text("1-2-3-4")
    assert key.raw == bytes.fromhex("01000000020000000300000004000000")
    # Linux prints every word as %08x
    assert key.to_text() == "00000001-00000002-00000003-00000004"


@given(st.binary(min_size=16, max_size=16))
def test_key_text_round_trip(raw: bytes) -> None:
    key = Key(raw)
    assert Key.from_text(key.to_text()) == key


def test_ring_text_and_raw_forms() -> None:
    text = f"{LINUX_KEY},00000001-00000002-00000003-00000004"
    ring = KeyRing.from_text(text)
    assert ring.to_text() == text
    assert len(ring.to_raw()) == 32
    assert KeyRing.from_raw(ring.to_raw()) == ring
    assert KeyRing.from_raw(ring.primary.raw) == KeyRing(ring.primary)
    assert KeyRing.from_text(" 0-0-0-0\n").to_text() == "00000000-00000000-00000000-00000000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "got 1 part"),
        ("1-2-3", "got 3 part"),
        ("1-2-3-4-5", "got 5 part"),
        ("1--3-4", "word 2 of the TFO key is empty"),
        ("1-2-xyz-4", "word 3"),
        ("1-2-3-123456789", "word 4"),
        ("0x1-2-3-4", "word 1"),
        ("1-2-3-4,5-6-7-8,9-a-b-c", "at most 2 keys"),
        ("1-2-3-4,5-6-7", "backup key"),
    ],
)
def test_bad_key_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        KeyRing.from_text(text)


@pytest.mark.parametrize("size", [0, 15, 17, 31, 33, 48])
def test_raw_key_of_wrong_length(size: int) -> None:
    with pytest.raises(KeyFormatError, match="16 or 32 bytes"):
        KeyRing.from_raw(bytes(size))


def test_check_says_which_key_matched() -> None:
    old = KeyRing.generate()
    new = old.rotated()
    assert new.backups == (old.primary,)
    client, server = "198.18.0.1", "198.18.0.2"
    assert new.check(new.mint(client, server), client, server) is Match.PRIMARY
    assert new.check(old.mint(client, server), client, server) is Match.BACKUP
    assert new.retired().check(old.mint(client, server), client, server) is Match.NONE
    # ports are not part of the cookie, addresses are
    assert new.check(new.mint(client, server), "198.18.0.3", server) is Match.NONE
    assert new.check(new.mint(client, server)[:4], client, server) is Match.NONE
    # a ring keeps at most max_keys keys
    assert len(new.rotated().keys) == 2
    assert len(new.rotated(max_keys=3).keys) == 3


def test_keys_never_show_in_repr() -> None:
    ring = KeyRing.from_text(LINUX_KEY)
    assert "a1a1a1a1" not in repr(ring)
    assert "a1a1a1a1" not in repr(ring.primary)
    assert ring.primary.masked().endswith("d4d4")
