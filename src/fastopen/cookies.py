"""Linux-compatible TCP Fast Open server cookies and key rings.

Since Linux 5.3 a server cookie is SipHash-2-4 keyed with the 16-byte TFO key over the SYN's
client address followed by its server address (network byte order, 4+4 bytes for IPv4, 16+16
for IPv6; a v4-mapped IPv6 pair hashes the 4+4 form). The 64-bit result goes on the wire as
8 little-endian bytes.

The key text form is the one ``net.ipv4.tcp_fastopen_key`` reads and prints: four hex words
``A-B-C-D``, each stored little-endian, optionally followed by ``,`` and a backup key.
"""

from __future__ import annotations

import enum
import hmac
import ipaddress
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

from fastopen.errors import KeyFormatError

KEY_SIZE = 16
COOKIE_SIZE = 8
#: Linux keeps a primary and at most one backup key per namespace or listener.
MAX_KEYS = 2

_MASK = 0xFFFFFFFFFFFFFFFF
_WORD = re.compile(r"[0-9a-fA-F]{1,8}")

Address = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash24_py(key: bytes, data: bytes) -> int:
    """SipHash-2-4 in pure Python (the reference algorithm); ``key`` is 16 bytes."""
    k0: int
    k1: int
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    full = len(data) - len(data) % 8
    for (m,) in struct.iter_unpack("<Q", data[:full]):
        v3 ^= m
        rounds(2)
        v0 ^= m
    last = int.from_bytes(data[full:], "little") | ((len(data) & 0xFF) << 56)
    v3 ^= last
    rounds(2)
    v0 ^= last
    v2 ^= 0xFF
    rounds(4)
    return v0 ^ v1 ^ v2 ^ v3


def _load_fast() -> Callable[[bytes, bytes], int] | None:
    try:
        import siphashc
    except ImportError:  # pragma: no cover - siphashc is a declared dependency
        return None
    fast: Callable[[bytes, bytes], int] = siphashc.siphash
    return fast


siphash24_fast = _load_fast()
#: The SipHash-2-4 in use: siphashc when importable, else the pure-Python one.
siphash24: Callable[[bytes, bytes], int] = siphash24_fast or siphash24_py


def pack_address(addr: Address) -> bytes:
    """An address in network byte order (4 or 16 bytes); a v4-mapped IPv6 address gives 4."""
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"a packed address is 4 or 16 bytes, not {len(addr)}")
        if len(addr) == 16 and addr[:12] == b"\0" * 10 + b"\xff\xff":
            return addr[12:]
        return addr
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.packed
    return ip.packed


def cookie_input(client: Address, server: Address) -> bytes:
    """The bytes Linux hashes for a SYN from ``client`` to ``server``."""
    c, s = pack_address(client), pack_address(server)
    if len(c) != len(s):
        raise ValueError("client and server addresses must be of the same family")
    return c + s


@dataclass(frozen=True, slots=True)
class Key:
    """One 16-byte TFO key, as the kernel holds it."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != KEY_SIZE:
            raise KeyFormatError(f"a TFO key is {KEY_SIZE} bytes, not {len(self.raw)}")

    @classmethod
    def generate(cls) -> Key:
        """A fresh random key from the ``secrets`` module."""
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def from_text(cls, text: str) -> Key:
        """Parse one key in the sysctl form ``A-B-C-D`` (four hex words of up to 8 digits)."""
        words = text.strip().split("-")
        if len(words) != 4:
            raise KeyFormatError(
                f"a TFO key is four hex words joined by '-', got {len(words)} part(s)",
                hint="example: 00000000-00000000-00000000-00000000",
            )
        for i, word in enumerate(words, 1):
            if not _WORD.fullmatch(word):
                # never echo the word: a mistyped key is still most of a secret
                what = "is empty" if not word else "is not 1 to 8 hex digits"
                raise KeyFormatError(f"word {i} of the TFO key {what}")
        return cls(struct.pack("<4I", *(int(w, 16) for w in words)))

    def to_text(self) -> str:
        """The key as the kernel prints it: ``%08x-%08x-%08x-%08x``."""
        return "-".join(f"{w:08x}" for w in struct.unpack("<4I", self.raw))

    def masked(self) -> str:
        """A form safe to print: the shape of the key, with only its last four digits shown."""
        text = self.to_text()
        return "xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxx" + text[-4:]

    def cookie(self, client: Address, server: Address) -> bytes:
        """The 8-byte cookie this key gives a client at ``client`` for server ``server``."""
        return self.cookie_packed(cookie_input(client, server))

    def cookie_packed(self, data: bytes) -> bytes:
        """The cookie over already packed ``client || server`` bytes (the fast path)."""
        return siphash24(self.raw, data).to_bytes(COOKIE_SIZE, "little")

    def __repr__(self) -> str:  # never show the key by accident
        return f"Key({self.masked()})"


class Match(enum.Enum):
    """Which key of a ring a cookie was made with."""

    PRIMARY = "primary"
    BACKUP = "backup"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class KeyRing:
    """A primary key and backup keys: cookies are minted with the primary and accepted from any.

    Linux holds one backup; FreeBSD a ring of up to ten. ``max_keys`` bounds the ring (2 for the
    Linux text and raw forms).
    """

    primary: Key
    backups: tuple[Key, ...] = ()

    @classmethod
    def generate(cls) -> KeyRing:
        return cls(Key.generate())

    @classmethod
    def from_text(cls, text: str) -> KeyRing:
        """Parse ``PRIMARY[,BACKUP]`` as ``net.ipv4.tcp_fastopen_key`` takes it."""
        parts = text.strip().split(",")
        if len(parts) > MAX_KEYS:
            raise KeyFormatError(
                f"Linux takes at most {MAX_KEYS} keys (primary,backup), got {len(parts)}"
            )
        keys = []
        for name, part in zip(("primary", "backup"), parts, strict=False):
            try:
                keys.append(Key.from_text(part))
            except KeyFormatError as exc:
                raise KeyFormatError(f"{name} key: {exc.message}", hint=exc.hint) from None
        return cls(keys[0], tuple(keys[1:]))

    def to_text(self) -> str:
        """The ring as the kernel prints it (keys joined by ``,``)."""
        return ",".join(k.to_text() for k in self.keys)

    @classmethod
    def from_raw(cls, raw: bytes) -> KeyRing:
        """Parse the ``TCP_FASTOPEN_KEY`` socket option form: 16 bytes, or 32 (primary, backup)."""
        if len(raw) not in (KEY_SIZE, 2 * KEY_SIZE):
            raise KeyFormatError(
                f"TCP_FASTOPEN_KEY takes {KEY_SIZE} or {2 * KEY_SIZE} bytes, not {len(raw)}"
            )
        primary = Key(raw[:KEY_SIZE])
        return cls(primary, (Key(raw[KEY_SIZE:]),) if len(raw) > KEY_SIZE else ())

    def to_raw(self) -> bytes:
        """The ring in the ``TCP_FASTOPEN_KEY`` form (Linux keeps only the first backup)."""
        if len(self.backups) > MAX_KEYS - 1:
            raise KeyFormatError("Linux keeps one backup key; this ring has more")
        return b"".join(k.raw for k in self.keys)

    @property
    def keys(self) -> tuple[Key, ...]:
        return (self.primary, *self.backups)

    def rotated(self, new: Key | None = None, *, max_keys: int = MAX_KEYS) -> KeyRing:
        """A ring with ``new`` (or a fresh key) as primary and the old keys as backups."""
        new = new or Key.generate()
        return KeyRing(new, self.keys[: max_keys - 1])

    def retired(self) -> KeyRing:
        """The ring without its backups."""
        return KeyRing(self.primary)

    def mint(self, client: Address, server: Address) -> bytes:
        """The cookie a server with this ring hands the client (always the primary's)."""
        return self.primary.cookie(client, server)

    def check(self, cookie: bytes, client: Address, server: Address) -> Match:
        """Which key made ``cookie``: primary first, then the backups; constant-time compares."""
        return self.check_packed(cookie, cookie_input(client, server))

    def check_packed(self, cookie: bytes, data: bytes) -> Match:
        if len(cookie) != COOKIE_SIZE:
            return Match.NONE
        if hmac.compare_digest(self.primary.cookie_packed(data), cookie):
            return Match.PRIMARY
        for key in self.backups:
            if hmac.compare_digest(key.cookie_packed(data), cookie):
                return Match.BACKUP
        return Match.NONE

    def __repr__(self) -> str:
        return f"KeyRing(primary={self.primary!r}, backups={len(self.backups)})"
