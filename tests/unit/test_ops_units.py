"""The pure parts of `fastopen.ops`: bit names, farm key derivation, durations, the key store's
file rules, alert rate limiting, counter deltas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastopen.cookies import Key, KeyRing
from fastopen.errors import FastOpenError, KeyFormatError, UnsafePermissions
from fastopen.ops import enable, farm, keys, stats
from fastopen.ops.alerts import AlertMonitor

SECRET = b"correct horse battery staple!!"


# -- bits ------------------------------------------------------------------------------------


def test_bit_names_and_linux_names_give_the_kernel_values() -> None:
    assert enable.mask(["client", "server"]) == 0x3
    assert enable.mask(["server-no-cookie", "TFO_SERVER_WO_SOCKOPT1"]) == 0x600
    assert enable.mask(["tfo_client_no_cookie"]) == 0x4
    assert enable.decode(0x603) == [
        "client",
        "server",
        "server-no-cookie",
        "server-all-listeners",
    ]
    assert enable.decode(0x801) == ["client", "0x800"]


def test_no_cookie_goes_with_the_sides_enabled() -> None:
    assert enable.without_cookies(0x1) == 0x5
    assert enable.without_cookies(0x2) == 0x202
    assert enable.without_cookies(0x400) == 0x600
    assert enable.without_cookies(0x3) == 0x207


def test_unknown_bit_is_a_clear_error() -> None:
    with pytest.raises(FastOpenError) as info:
        enable.mask(["client", "turbo"])
    assert "unknown TFO bit 'turbo'" in str(info.value)
    assert "server-no-cookie" in (info.value.hint or "")


def test_persist_text_is_a_sysctl_d_line() -> None:
    lines = [ln for ln in enable.persist_text(0x3).splitlines() if not ln.startswith("#")]
    assert lines == ["net.ipv4.tcp_fastopen = 3"]


# -- farm keys -------------------------------------------------------------------------------


def test_kdf_is_the_documented_one() -> None:
    # HMAC-SHA256(secret, b"fastopen-tfo-key" || i as 8 bytes big-endian)[:16]
    assert farm.derive_key(SECRET, 20781).raw.hex() == "62375d9e175d25243b8eea9fd1228796"
    assert farm.derive_key(SECRET, 0).raw.hex() == "3320bb497b47a2d8a9d78b196fb2b6fa"


def test_farm_ring_is_this_interval_then_the_previous() -> None:
    day = 86400
    now = 20781 * day + 5
    fk = farm.farm_keys(SECRET, day, now)
    assert fk.index == 20781
    assert (fk.start, fk.end) == (20781 * day, 20782 * day)
    assert fk.ring.primary == farm.derive_key(SECRET, 20781)
    assert fk.ring.backups == (farm.derive_key(SECRET, 20780),)
    # the same interval gives the same ring anywhere in it; the next one shifts it by one
    assert farm.farm_keys(SECRET, day, fk.end - 0.001).ring == fk.ring
    nxt = farm.farm_keys(SECRET, day, fk.end)
    assert nxt.ring.backups == (fk.ring.primary,)
    assert farm.farm_keys(b"another secret of the farm", day, now).ring != fk.ring


def test_durations() -> None:
    assert farm.parse_duration("1d") == 86400
    assert farm.parse_duration("90") == 90
    assert farm.parse_duration("12h") == 43200
    assert farm.parse_duration("0", minimum=0) == 0
    for bad in ("0", "1y", "-5s", "soon", ""):
        with pytest.raises(FastOpenError):
            farm.parse_duration(bad)
    assert farm.format_duration(86399.6) == "1d"
    assert farm.format_duration(3725) == "1h 2m"
    assert farm.format_duration(0) == "0s"


def test_secret_file_rules(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o644)
    with pytest.raises(UnsafePermissions) as info:
        farm.read_secret(path)
    assert info.value.hint == f"chmod 600 {path}"
    path.chmod(0o600)
    assert farm.read_secret(path) == SECRET  # surrounding whitespace ignored
    path.write_bytes(b"short\n")
    with pytest.raises(FastOpenError, match="at least 16"):
        farm.read_secret(path)


# -- key store -------------------------------------------------------------------------------


def test_store_refuses_a_readable_file_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "tfo-key.json"
    path.write_text(json.dumps({"format": 1, "keys": Key(bytes(range(16))).to_text()}))
    path.chmod(0o640)
    with pytest.raises(UnsafePermissions):
        keys.load(path)
    path.chmod(0o600)
    stored = keys.load(path)
    assert stored is not None and stored.ring.primary.raw == bytes(range(16))
    path.write_text(json.dumps({"format": 1, "keys": "1-2-3"}))
    with pytest.raises(KeyFormatError, match="four hex words"):
        keys.load(path)
    path.write_text("not json")
    with pytest.raises(KeyFormatError, match="not a fastopen key store"):
        keys.load(path)
    assert keys.load(tmp_path / "missing.json") is None


def test_grace_time() -> None:
    ring = KeyRing.generate().rotated()
    assert keys.grace_left(keys.Stored(ring, 1000.0), 60, 1030.0) == 30.0
    assert keys.grace_left(keys.Stored(ring, 1000.0), 60, 2000.0) == 0.0
    assert keys.grace_left(keys.Stored(ring, None), 60, 2000.0) is None


def test_describe_masks_unless_revealed() -> None:
    ring = KeyRing.from_text("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4")
    assert keys.describe(ring, reveal=False)["primary"] == "xxxxxxxx-xxxxxxxx-xxxxxxxx-xxxxd4d4"
    assert keys.describe(ring, reveal=True)["primary"] == "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
    assert keys.describe(None, reveal=True) == {"set": False}


# -- alerts ----------------------------------------------------------------------------------


def test_alerts_are_rate_limited_and_summed(caplog: pytest.LogCaptureFixture) -> None:
    monitor = AlertMonitor(min_interval=300)
    zero = {"TCPFastOpenPassiveFail": 0, "TCPFastOpenListenOverflow": 0, "TCPFastOpenPassive": 0}
    first = dict(zero, TCPFastOpenPassiveFail=2, TCPFastOpenPassive=50)
    with caplog.at_level("WARNING", logger="fastopen.ops.alerts"):
        alerts = monitor.check(zero, first, now=1000)
        assert [(a.counter, a.rise) for a in alerts] == [("TCPFastOpenPassiveFail", 2)]
        assert "fastopen key rotate" in alerts[0].message
        second = dict(first, TCPFastOpenPassiveFail=5)
        assert monitor.check(first, second, now=1100) == []  # within 300 s: held back
        third = dict(second, TCPFastOpenListenOverflow=1)
        late = monitor.check(second, third, now=1400)
    assert [(a.counter, a.rise) for a in late] == [
        ("TCPFastOpenListenOverflow", 1),
        ("TCPFastOpenPassiveFail", 3),  # the held-back rise
    ]
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 3
    assert monitor.check(third, third, now=5000) == []  # nothing rose, nothing said


# -- stats -----------------------------------------------------------------------------------


def test_rows_give_deltas_and_rates() -> None:
    before = stats.Snapshot(10.0, {"TCPFastOpenPassive": 5, "TCPFastOpenPassiveFail": 1})
    now = stats.Snapshot(12.0, {"TCPFastOpenPassive": 25, "TCPFastOpenPassiveFail": 1})
    rows = {r.name: r for r in stats.rows(now, before)}
    assert (rows["TCPFastOpenPassive"].delta, rows["TCPFastOpenPassive"].rate) == (20, 10.0)
    assert rows["TCPFastOpenPassiveFail"].delta == 0
    assert [r.delta for r in stats.rows(now)] == [None, None]


def test_listen_address() -> None:
    assert stats.parse_listen("127.0.0.1:9662") == ("127.0.0.1", 9662)
    assert stats.parse_listen("[::1]:9662") == ("::1", 9662)
    assert stats.parse_listen(":9662") == ("0.0.0.0", 9662)
    for bad in ("9662", "host:", "h:70000"):
        with pytest.raises(FastOpenError):
            stats.parse_listen(bad)
