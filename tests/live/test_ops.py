"""`fastopen` operations against the real kernel, in namespaces the tests create: sysctl bits, keys
and their rotation, farm keys, the exporter and alerts, the client cookie cache, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

from click.testing import Result
from jsoncontract import as_json, check, cli
from tfo import echo_server, request

from fastopen.lab.netns import CLIENT, SERVER, Netns, enable_tfo, veth_link

FASTOPEN = str(Path(sys.executable).with_name("fastopen"))
KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
OTHER = "01234567-89abcdef-fedcba98-76543210"
KEY_SYSCTL = "net.ipv4.tcp_fastopen_key"
BITS_SYSCTL = "net.ipv4.tcp_fastopen"


def ok(*args: str) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


def rises(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k.removeprefix("TCPFastOpen"): after[k] - before[k] for k in after}


# -- bits ------------------------------------------------------------------------------------


def test_bits_round_trip_by_name(netns: Netns, tmp_path: Path) -> None:
    ns = ["--netns", netns.name]
    ok("disable", *ns)
    assert netns.sysctl(BITS_SYSCTL) == "1"  # Linux's default, not 0
    ok("disable", "client", *ns)
    assert netns.sysctl(BITS_SYSCTL) == "0"
    for name, value in [
        ("client", 0x1),
        ("server", 0x2),
        ("client-no-cookie", 0x4),
        ("server-no-cookie", 0x200),
        ("server-all-listeners", 0x400),
    ]:
        change = as_json("enable", name, *ns)
        assert (change["before"], change["after"]) == (0, value)
        assert int(netns.sysctl(BITS_SYSCTL)) == value
        assert as_json("status", *ns)["bits"] == [name]
        ok("disable", name, *ns)
        assert netns.sysctl(BITS_SYSCTL) == "0"

    ok("enable", "server", "--no-cookie", *ns)
    assert int(netns.sysctl(BITS_SYSCTL)) == 0x202
    ok("enable", "--client", "--server", "--no-cookie", *ns)
    assert int(netns.sysctl(BITS_SYSCTL)) == 0x207
    ok("disable", "client-no-cookie", "TFO_SERVER_COOKIE_NOT_REQD", *ns)
    assert netns.sysctl(BITS_SYSCTL) == "3"

    # numbers as the sysctl takes them; bits Linux does not define are not kept
    ok("disable", "0x2", *ns)
    assert netns.sysctl(BITS_SYSCTL) == "1"
    ok("enable", "3", *ns)
    assert netns.sysctl(BITS_SYSCTL) == "3"
    netns.sysctl(BITS_SYSCTL, 0x803)
    change = as_json("disable", "server", *ns)
    assert (change["before"], change["after"], change["before_bits"]) == (
        0x803,
        0x1,
        ["client", "server", "0x800"],
    )
    netns.sysctl(BITS_SYSCTL, 0x207)
    netns.sysctl("net.ipv4.tcp_fastopen_blackhole_timeout_sec", 3600)
    reset = as_json("reset", *ns)
    assert (reset["before"], reset["after"]) == (0x207, 1)
    assert (reset["blackhole_timeout_before_s"], reset["blackhole_timeout_after_s"]) == (3600, 0)
    assert netns.sysctl("net.ipv4.tcp_fastopen_blackhole_timeout_sec") == "0"
    ok("enable", *ns)

    conf = tmp_path / "sysctl.d" / "60-fastopen.conf"
    ok("disable", "client", "--persist", "--persist-file", str(conf), *ns)
    assert netns.sysctl(BITS_SYSCTL) == "2"
    assert "net.ipv4.tcp_fastopen = 2\n" in conf.read_text()
    # the file is what sysctl(8) applies at boot: it sets the same value
    netns.run(["sysctl", "-q", "-w", f"{BITS_SYSCTL}=0"])
    netns.run(["sysctl", "-q", "-p", str(conf)])
    assert netns.sysctl(BITS_SYSCTL) == "2"


def test_status_reports_bits_key_and_features(netns: Netns) -> None:
    st = as_json("status", "--netns", netns.name)
    assert st["tcp_fastopen"] == 3 and st["bits"] == ["client", "server"]
    assert st["netns"] == netns.name
    assert st["key_set"] is False
    assert any("fastopen key generate" in a for a in st["advice"])
    assert {f["name"]: f["present"] for f in st["features"]} == {
        "siphash-cookies": True,
        "tcp-fastopen-connect": True,
        "backup-keys": True,
        "tfo-child": True,
    }
    assert set(st["counters"]) >= {"TCPFastOpenPassive", "TCPFastOpenPassiveAltKey"}
    netns.sysctl(KEY_SYSCTL, KEY)
    text = ok("status", "--netns", netns.name).stdout
    assert "key                    set" in text
    assert KEY.split("-")[0] not in text  # never the key itself


# -- keys ------------------------------------------------------------------------------------


def test_key_set_gives_the_cookies_fastopen_cookie_predicts(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    client, server = netns_pair
    store = tmp_path / "key.json"
    out = ok("key", "set", KEY, "--netns", server.name, "--store", str(store)).stdout
    assert KEY not in out and "xxxxd4d4" in out  # shown masked
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    assert server.sysctl(KEY_SYSCTL) == KEY
    with echo_server(server, SERVER.ipv4), echo_server(server, SERVER.ipv6):
        assert request(client, SERVER.ipv4, b"v4") == b"ok:v4"
        assert request(client, SERVER.ipv6, b"v6") == b"ok:v6"

    cached = {e["destination"]: e for e in as_json("cookies", "--netns", client.name)["entries"]}
    for caddr, saddr in ((CLIENT.ipv4, SERVER.ipv4), (CLIENT.ipv6, SERVER.ipv6)):
        predicted = ok("cookie", KEY, caddr, saddr).stdout.strip()
        assert cached[saddr]["cookie"] == predicted
        assert cached[saddr]["source"] == caddr

    shown = as_json("key", "show", "--netns", server.name, "--store", str(store))
    assert shown["in_sync"] and shown["kernel"]["primary"].endswith("d4d4")
    assert KEY not in json.dumps(shown)
    revealed = as_json("key", "show", "--reveal", "--netns", server.name, "--store", str(store))
    assert revealed["kernel"]["primary"] == KEY


def test_cookies_lists_what_ip_tcp_metrics_lists_and_flushes_it(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4), echo_server(server, SERVER.ipv6):
        request(client, SERVER.ipv4, b"a")
        request(client, SERVER.ipv6, b"b")
    listing = as_json("cookies", "list", "--netns", client.name)
    listed = {e["destination"]: e for e in listing["entries"]}
    shown = client.run(["ip", "tcp_metrics", "show"]).stdout.splitlines()
    assert len(shown) == len(listed) == 2
    for line in shown:
        dst = line.split()[0]
        entry = listed[dst]
        assert f"fo_cookie {entry['cookie']}" in line
        assert f"fo_mss {entry['mss']}" in line
        assert f"source {entry['source']}" in line
        assert entry["syn_drops"] == 0 and entry["age"] >= 0
    text = ok("cookies", "--netns", client.name).stdout
    assert listed[SERVER.ipv4]["cookie"] in text
    # the table is as wide as its content: an IPv6 row stays on one line
    row = next(line for line in text.splitlines() if line.startswith(SERVER.ipv6))
    assert listed[SERVER.ipv6]["cookie"] in row and CLIENT.ipv6 in row

    def cached() -> list[str]:
        return [line.split()[0] for line in client.run(["ip", "tcp_metrics"]).stdout.splitlines()]

    for addr, left in ((SERVER.ipv6, [SERVER.ipv4]), (SERVER.ipv4, [])):
        assert as_json("cookies", "flush", addr, "--netns", client.name)["flushed"] == 1
        assert cached() == left
    assert as_json("cookies", "flush", SERVER.ipv4, "--netns", client.name)["flushed"] == 0
    with echo_server(server, SERVER.ipv4), echo_server(server, SERVER.ipv6):
        request(client, SERVER.ipv4, b"a")
        request(client, SERVER.ipv6, b"b")
    assert len(cached()) == 2
    assert "flushed 2 entries" in ok("cookies", "--netns", client.name, "flush").stdout
    assert cached() == []


def test_rotation_under_load_loses_nothing_and_retire_rejects_the_old_cookie(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    client, server = netns_pair
    sources = [f"198.18.0.{n}" for n in range(11, 15)]
    stale = "198.18.0.20"  # keeps its old-key cookie through the rotation
    for addr in [*sources, stale]:
        client.ip("addr", "add", f"{addr}/24", "dev", "eth0")
    store = tmp_path / "key.json"
    ns = ["--netns", server.name, "--store", str(store)]
    ok("key", "generate", *ns)
    rounds = 6
    rotate_now, rotated = threading.Event(), threading.Event()
    answers: list[bytes] = []

    def stream() -> None:
        for n in range(rounds):
            if n == 2:
                rotate_now.set()
                assert rotated.wait(10)
            for src in sources:
                answers.append(request(client, SERVER.ipv4, f"{n}{src}".encode(), src))

    with echo_server(server, SERVER.ipv4):
        for src in [*sources, stale]:  # a cookie request, then TFO
            request(client, SERVER.ipv4, b"warm", src)
            request(client, SERVER.ipv4, b"warm", src)
        before = server.counters()
        thread = threading.Thread(target=stream)
        thread.start()
        assert rotate_now.wait(10)
        out = ok("key", "rotate", *ns).stdout
        assert "note:" not in out  # the store and the kernel agreed
        rotated.set()
        thread.join(30)
        during = server.counters()

        assert "backup" in out
        assert answers == [f"ok:{n}{s}".encode() for n in range(rounds) for s in sources]
        rose = rises(before, during)
        assert rose["PassiveFail"] == 0
        assert rose["PassiveAltKey"] == len(sources)  # each old cookie once, then refreshed
        assert rose["Passive"] == rounds * len(sources)  # every request rode in the SYN

        # within the grace time retire refuses; after it the old key is gone
        refused = cli("key", "retire", *ns)
        assert refused.exit_code == 2 and "grace time" in refused.stderr
        ok("key", "retire", "--grace", "0", *ns)
        assert "," not in server.sysctl(KEY_SYSCTL)
        assert request(client, SERVER.ipv4, b"late", stale) == b"ok:late"
        after = server.counters()
    late = rises(during, after)
    assert (late["PassiveFail"], late["PassiveAltKey"], late["Passive"]) == (1, 0, 0)


def test_farm_servers_derive_the_same_keys_and_take_each_others_cookies(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    client, server1 = netns_pair
    secret = tmp_path / "farm.secret"
    secret.write_text("a farm secret shared by every server\n")
    secret.chmod(0o600)
    farm = ["--secret-file", str(secret), "--interval", "1d"]
    with Netns("s2") as server2:
        enable_tfo(server2)
        derived = [
            as_json("key", "derive", *farm, "--reveal", "--netns", ns.name)
            for ns in (server1, server2)
        ]
        for d in derived:
            d.pop("time")
        assert derived[0] == derived[1]
        for ns in (server1, server2):
            store = tmp_path / f"{ns.name}.json"
            ok("keyd", *farm, "--once", "--netns", ns.name, "--store", str(store))
            assert ns.sysctl(KEY_SYSCTL) == derived[0]["key_text"]
        assert derived[0]["key_text"] == f"{derived[0]['primary']},{derived[0]['backup']}"

        with echo_server(server1, SERVER.ipv4):
            request(client, SERVER.ipv4, b"cookie please")
            assert request(client, SERVER.ipv4, b"one") == b"ok:one"
        # the same service address, now reached on the other server (as behind DSR)
        client.ip("link", "del", "eth0")
        veth_link(client, server2)
        before = server2.counters()
        with echo_server(server2, SERVER.ipv4):
            assert request(client, SERVER.ipv4, b"two") == b"ok:two"
        rose = rises(before, server2.counters())
    assert (rose["Passive"], rose["PassiveFail"], rose["CookieReqd"]) == (1, 0, 0)


def test_keyd_runs_until_sigterm_and_never_logs_the_key(netns: Netns, tmp_path: Path) -> None:
    secret = tmp_path / "farm.secret"
    secret.write_text("another farm secret, 32 bytes..\n")
    secret.chmod(0o600)
    args = ["--secret-file", str(secret), "--interval", "1h"]
    store = str(tmp_path / "key.json")
    proc = subprocess.Popen(
        [FASTOPEN, "keyd", *args, "--check", "1s", "--netns", netns.name, "--store", store],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "applied the farm key" in proc.stderr.readline()
        assert "keyd started" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        log = proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "keyd stopped" in log
    key = as_json("key", "derive", *args, "--reveal")["key_text"]
    assert netns.sysctl(KEY_SYSCTL) == key
    assert key.split(",")[0].split("-")[1] not in log


# -- stats and alerts ------------------------------------------------------------------------


def _kernel_series(ns: Netns, body: str) -> dict[str, float]:
    labels = re.escape(f'{{netns="{ns.name}",stack="kernel",tun=""}}')
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf"^fastopen_netstat_TcpExt_(\w+){labels} (\S+)$", body, re.MULTILINE)
    }


def _scrape(ns: Netns, port: int) -> dict[str, float]:
    with ns.entered(), urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return _kernel_series(ns, r.read().decode())


def test_exporter_scrape_shows_the_counters(netns: Netns, tmp_path: Path) -> None:
    with echo_server(netns, "127.0.0.1"):
        request(netns, "127.0.0.1", b"a")
        request(netns, "127.0.0.1", b"b")
        proc = subprocess.Popen(
            [FASTOPEN, "stats", "--serve", "127.0.0.1:9662", "--netns", netns.name],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            assert "serving /metrics" in proc.stderr.readline()
            first = _scrape(netns, 9662)
            tcpext = netns.counters()
            assert {k: first[k] for k in tcpext} == {k: float(v) for k, v in tcpext.items()}
            assert set(first) >= {"ListenOverflows", "ListenDrops"}
            assert first["TCPFastOpenPassive"] == 1 and first["TCPFastOpenCookieReqd"] == 1
            request(netns, "127.0.0.1", b"c")
            assert _scrape(netns, 9662)["TCPFastOpenPassive"] == 2  # read at scrape time
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0

    prom = tmp_path / "fastopen.prom"
    ok("stats", "--textfile", str(prom), "--netns", netns.name)
    assert _kernel_series(netns, prom.read_text())["TCPFastOpenPassive"] == 2.0
    assert f'fastopen_sysctl_tcp_fastopen{{netns="{netns.name}"}} 3.0' in prom.read_text()


def test_watch_reports_deltas_and_warns_when_passive_fail_rises(netns: Netns) -> None:
    netns.sysctl(KEY_SYSCTL, KEY)
    with echo_server(netns, "127.0.0.1"):
        request(netns, "127.0.0.1", b"cookie please")
        netns.sysctl(KEY_SYSCTL, OTHER)  # a key change without a backup: the cookie is stale
        proc = subprocess.Popen(
            [FASTOPEN, "stats", "--watch", "0.3", "--count", "6", "--json", "--netns", netns.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            assert request(netns, "127.0.0.1", b"stale") == b"ok:stale"
            rest, log = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reports = [check(["stats"], d) for d in [first, *map(json.loads, rest.splitlines())]]
    assert len(reports) == 6
    assert all(r["interval_s"] > 0 and r["stack"] == "kernel" for r in reports)
    assert [r["time"] for r in reports] == sorted(r["time"] for r in reports)
    assert sum(r["counters"]["TCPFastOpenPassiveFail"]["delta"] for r in reports) == 1
    assert reports[-1]["counters"]["TCPFastOpenPassiveFail"]["value"] == 1
    once = as_json("stats", "--netns", netns.name)  # the same shape, without deltas
    assert (
        once["interval_s"] is None and once["counters"]["TCPFastOpenPassiveFail"]["delta"] is None
    )
    assert log.count("TCPFastOpenPassiveFail rose by 1") == 1
    assert "fastopen key rotate" in log


# -- bad input changes nothing ---------------------------------------------------------------


def test_bad_input_is_refused_clearly_and_changes_nothing(netns: Netns, tmp_path: Path) -> None:
    ns = ["--netns", netns.name]
    netns.sysctl(KEY_SYSCTL, KEY)
    store, conf = tmp_path / "key.json", tmp_path / "60-fastopen.conf"

    bad_bit = cli("enable", "client", "turbo", "--persist", "--persist-file", str(conf), *ns)
    assert bad_bit.exit_code == 2
    assert "unknown TFO bit 'turbo'" in bad_bit.stderr and "known bits" in bad_bit.stderr
    assert netns.sysctl(BITS_SYSCTL) == "3" and not conf.exists()

    bad_key = cli("key", "set", "a1a1a1a1-b2b2b2b2-zz-d4d4d4d4", "--store", str(store), *ns)
    assert bad_key.exit_code == 2 and "word 3 of the TFO key" in bad_key.stderr
    assert "zz" not in bad_key.stderr
    assert netns.sysctl(KEY_SYSCTL) == KEY and not store.exists()

    secret = tmp_path / "farm.secret"
    secret.write_text("a farm secret shared by every server\n")
    secret.chmod(0o644)
    unsafe = cli("keyd", "--secret-file", str(secret), "--once", *ns)
    assert unsafe.exit_code == 2
    assert "open to other users" in unsafe.stderr and f"chmod 600 {secret}" in unsafe.stderr
    assert netns.sysctl(KEY_SYSCTL) == KEY

    missing = cli("status", "--netns", "fo-no-such-namespace")
    assert missing.exit_code == 2 and "no network namespace" in missing.stderr


def test_without_root_commands_fail_clearly_and_change_nothing(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4):
        request(client, SERVER.ipv4, b"x")
    client.sysctl(KEY_SYSCTL, KEY)
    shared = Path(tempfile.mkdtemp(prefix="fo-ops-"))  # nobody may write here
    try:
        shared.chmod(0o1777)
        store = shared / "key.json"
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", FASTOPEN]
        env = dict(os.environ, HOME="/")
        for args, message in [
            (["enable", "server-no-cookie"], "setting net.ipv4.tcp_fastopen needs root"),
            (["key", "set", OTHER, "--store", str(store)], "needs root"),
            (["cookies", "flush"], "flushing the TFO cookie cache needs root"),
        ]:
            proc = client.run([*nobody, *args], check=False, env=env)
            assert proc.returncode == 2, proc.stderr
            assert message in proc.stderr and "hint: run as root" in proc.stderr
        assert client.sysctl(BITS_SYSCTL) == "3"
        assert client.sysctl(KEY_SYSCTL) == KEY and not store.exists()
        assert SERVER.ipv4 in client.run(["ip", "tcp_metrics", "show"]).stdout
        entering = subprocess.run(
            [*nobody, "status", "--netns", client.name], capture_output=True, text=True, env=env
        )
        assert entering.returncode == 2
        assert "entering a network namespace needs root" in entering.stderr
        # reading works without root, except the key
        st = json.loads(client.run([*nobody, "status", "--json"], env=env).stdout)
        assert st["tcp_fastopen"] == 3 and st["key_set"] is None
    finally:
        for leftover in shared.iterdir():
            leftover.unlink()
        shared.rmdir()
