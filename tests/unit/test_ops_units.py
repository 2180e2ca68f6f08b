"""The pure parts of `fastopen.ops`: bit names, farm key derivation, durations, the key store's
file rules, alert rate limiting, counter deltas."""

from __future__ import annotations

import json
import shlex
import threading
from pathlib import Path

import click
import pytest
from prometheus_client import generate_latest

from fastopen.cli import main
from fastopen.cli.options import parse_duration
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


def test_durations_mean_the_same_everywhere() -> None:
    assert parse_duration("1d") == 86400
    assert parse_duration("90") == 90
    assert parse_duration("12h") == 43200
    assert parse_duration("1.5h") == 5400
    assert parse_duration("50ms") == pytest.approx(0.05)
    assert parse_duration("50", unit="ms") == pytest.approx(0.05)
    assert parse_duration("250us") == pytest.approx(0.00025)
    assert parse_duration("0") == 0
    for bad in ("1y", "-5s", "soon", "", "nan", "inf", "1e300", "99999999999999999999w", "1s5"):
        with pytest.raises(FastOpenError):
            parse_duration(bad)
    with pytest.raises(FastOpenError, match="out of range"):
        parse_duration("0", minimum=0, min_open=True)
    with pytest.raises(FastOpenError, match="out of range"):
        parse_duration("11s", maximum=10)
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
    before = stats.Snapshot(10.0, 1e9, {"TCPFastOpenPassive": 5, "TCPFastOpenPassiveFail": 1})
    now = stats.Snapshot(12.0, 1e9 + 2, {"TCPFastOpenPassive": 25, "TCPFastOpenPassiveFail": 1})
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


# -- bits by number, Linux's default, persisting from a namespace, the boot-time rule ---------


def test_bits_by_number_and_only_known_ones() -> None:
    assert enable.mask(["3"]) == 0x3
    assert enable.mask(["0x2", "client"]) == 0x3
    assert enable.mask(["0x202"]) == 0x202
    for bad in ("0x8", "0x800", "-1"):
        with pytest.raises(FastOpenError, match=r"does not define|negative"):
            enable.mask([bad])
    assert enable.DEFAULT == 0x1


def test_persist_from_a_namespace_never_targets_the_hosts_boot(tmp_path: Path) -> None:
    for path in (
        enable.PERSIST_FILE,
        Path("/etc/sysctl.conf"),
        Path("/usr/lib/sysctl.d/99-x.conf"),
        Path("/etc/sysctl.d/../sysctl.d/x.conf"),
    ):
        enable.check_persist(path, host=True)
        with pytest.raises(FastOpenError, match="the host's boot applies to the host"):
            enable.check_persist(path, host=False)
    enable.check_persist(tmp_path / "ns.conf", host=False)  # a file of the operator's own


def test_wait_after_boot_waits_until_the_delay_and_stops_on_a_signal() -> None:
    clock = [10.0]
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock[0] += seconds / 2  # woken early (a spurious wake): it must wait again
        return False

    assert enable.wait_after_boot(300.0, wait, lambda: clock[0])
    assert waits[0] == 290.0 and clock[0] >= 300.0
    waits.clear()
    assert enable.wait_after_boot(300.0, wait, lambda: 400.0)  # long after boot: at once
    assert waits == []
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert not enable.wait_after_boot(3600.0, stop.wait, lambda: 0.0)  # SIGTERM: nothing done


def _parse(command_line: str) -> tuple[str, dict[str, object]]:
    """The command and its parameters, as `fastopen` would parse ``command_line``."""
    args = shlex.split(command_line)[1:]
    command: click.Command = main
    names = []
    while isinstance(command, click.Group):
        name = args.pop(0)
        found = command.get_command(click.Context(command), name)
        assert found is not None, name
        command, names = found, [*names, name]
    return " ".join(names), command.make_context(names[-1], args).params


UNITS_DIR = Path(__file__).parents[2] / "docs" / "systemd"


def test_the_systemd_units_run_commands_that_parse() -> None:
    units = sorted(UNITS_DIR.glob("*.service"))
    assert len(units) == 3
    seen = {}
    for unit in units:
        for line in unit.read_text().splitlines():
            if line.startswith(("ExecStart=", "ExecStop=")):
                name, params = _parse(line.split("=", 1)[1])
                seen[name] = params
    assert seen["enable"]["after_boot"] == 300.0 and seen["enable"]["server"] is True
    assert seen["disable"]["names"] == ("server",)
    assert seen["key set"]["value"] is None  # restore the stored key
    assert seen["cookies flush"]["on_address_change"] is True


# -- keys: the store against the kernel ------------------------------------------------------


def test_compare_tells_which_is_newer(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text("{}")
    a, b, c = (KeyRing(Key(bytes([n]) * 16)) for n in (1, 2, 3))
    assert keys.compare(path, None, a) is None
    assert keys.compare(path, keys.Stored(a), a) is None
    rotated_in_kernel = KeyRing(b.primary, (a.primary,))
    found = keys.compare(path, keys.Stored(a), rotated_in_kernel)
    assert found is not None and found.newer == "kernel"
    stored_rotation = keys.Stored(KeyRing(b.primary, (a.primary,)))
    found = keys.compare(path, stored_rotation, a)
    assert found is not None and found.newer == "store"
    found = keys.compare(path, keys.Stored(a), None)
    assert found is not None and found.newer == "store" and "reboot" in found.reason
    found = keys.compare(path, keys.Stored(a), c)  # set by sysctl, after the store was written
    assert found is not None and found.newer == "unknown"
    assert "fastopen key rotate" in found.advice


# -- alerts of both stacks, Prometheus names --------------------------------------------------


def test_alerts_are_kept_per_stack(caplog: pytest.LogCaptureFixture) -> None:
    monitor = AlertMonitor(min_interval=300)
    zero = {"TCPFastOpenListenOverflow": 0}
    up = {"TCPFastOpenListenOverflow": 4}
    with caplog.at_level("WARNING", logger="fastopen.ops.alerts"):
        assert len(monitor.check(zero, up, now=1000)) == 1
        # the userspace stack's overflow is its own: not held back by the kernel's
        alerts = monitor.check(zero, up, now=1001, stack="userspace")
    assert [(a.counter, a.rise) for a in alerts] == [("TCPFastOpenListenOverflow", 4)]
    assert "(userspace stack)" in alerts[0].message


def test_metrics_in_node_exporter_style_with_both_stacks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stats, "RUN_DIR", tmp_path)
    monkeypatch.setattr(stats, "netns_label", lambda: "fo-test")
    # a kernel that lacks TCPFastOpenPassiveAltKey (before 5.3)
    monkeypatch.setattr(stats.counters, "tcpext", lambda: {"TCPFastOpenPassive": 7})
    monkeypatch.setattr(stats.enable, "read", lambda: 3)
    published = stats.CounterFile("fous0", netns="fo-test")
    published.publish({"TCPFastOpenListenOverflow": 2, "TCPFastOpenPassive": 5})
    try:
        text = generate_latest(stats.registry()).decode()
        assert [
            (p.tun, p.counters["TCPFastOpenListenOverflow"]) for p in stats.userspace_stacks()
        ] == [("fous0", 2)]
    finally:
        published.close()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert (
        'fastopen_netstat_TcpExt_TCPFastOpenPassive{netns="fo-test",stack="kernel",tun=""} 7.0'
        in lines
    )
    assert (
        'fastopen_netstat_TcpExt_TCPFastOpenPassive{netns="fo-test",stack="userspace",tun="fous0"}'
        " 5.0" in lines
    )
    assert (
        "fastopen_netstat_TcpExt_TCPFastOpenListenOverflow"
        '{netns="fo-test",stack="userspace",tun="fous0"} 2.0' in lines
    )
    # the kernel lacks it: absent, not 0; the userspace stack has it
    assert not any("PassiveAltKey" in line and 'stack="kernel"' in line for line in lines)
    assert 'fastopen_sysctl_tcp_fastopen{netns="fo-test"} 3.0' in lines
    assert "# TYPE fastopen_netstat_TcpExt_TCPFastOpenPassive untyped" in text
    assert not published.path.exists() and stats.userspace_stacks() == []
