"""The kernel-stack client learns: behind a box that drops SYNs with data, connections go
without TFO at once after the first loss, and TFO comes back after the backoff."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_namespaces
from jsoncontract import check
from tfo import echo_server

import fastopen
from fastopen.kernel import pathcache, tcpinfo
from fastopen.lab.emulator import Lab
from fastopen.lab.netns import SERVER, Netns
from fastopen.lab.router import iptables
from fastopen.lab.servers import kernel_echo
from fastopen.report import FailReason, OffReason
from fastopen.runtime.stack import UserspaceStack

pytestmark = pytest.mark.live
DROP_SYN_DATA = [
    "INPUT",
    "-p",
    "tcp",
    "--syn",
    "-m",
    "length",
    "--length",
    "100:65535",
    "-j",
    "DROP",
]
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"x" * 60  # read whole by the echo server


def connect(client: Netns) -> tuple[fastopen.TfoReport, int]:
    """One request with fastopen.create_connection from ``client``; its report and the SYN
    retransmissions it took."""
    with client.entered():
        sock = fastopen.create_connection((SERVER.ipv4, 8080), 5, first_flight=REQUEST)
    with sock:
        assert sock.recv(200).startswith(b"ok:")
        return fastopen.report(sock), tcpinfo.read(sock).total_retrans


def test_syn_data_dropping_path_is_skipped_then_retried(
    netns_pair: tuple[Netns, Netns], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, server = netns_pair
    monkeypatch.setenv("FASTOPEN_PATHS_DIR", str(tmp_path))
    monkeypatch.setenv("FASTOPEN_TFO_BACKOFF", "1.5")
    with echo_server(server, SERVER.ipv4):
        first, _ = connect(client)  # a cookie request
        assert first.fail_reason is FailReason.NO_COOKIE
        iptables(server, ["-A", *DROP_SYN_DATA])
        lost, retrans = connect(client)  # the SYN with data is dropped: 1 s
        assert lost.fail_reason is FailReason.SYN_RETRANSMITTED and retrans >= 1
        with client.entered():
            [entry] = pathcache.entries()
        assert (entry.address, entry.port, entry.failures) == (SERVER.ipv4, 8080, 1)
        for _ in range(18):  # the 3rd to 20th: plain connects, nothing retransmitted
            skipped, retrans = connect(client)
            assert skipped.off_reason is OffReason.PATH_BLOCKED and retrans == 0
        assert skipped.note is not None
        assert "SYN data was lost on this path 1 time, retry in" in str(skipped)
        iptables(server, ["-D", *DROP_SYN_DATA])
        with client.entered():
            time.sleep(max(0.0, entry.retry_at - time.time()) + 0.1)
        back, retrans = connect(client)  # the backoff is over: TFO again, and it works
        assert back.attempted and back.syn_data_acked and retrans == 0
        with client.entered():
            assert pathcache.entries() == []


def test_failures_double_the_backoff_and_reset_clears(
    netns: Netns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTOPEN_PATHS_DIR", str(tmp_path))
    monkeypatch.setenv("FASTOPEN_TFO_BACKOFF", "60")
    t = float(int(time.time()))
    with netns.entered():
        first = pathcache.record("198.18.0.2", 80, pathcache.Failure.LOST, now=t)
        second = pathcache.record("198.18.0.2", 80, pathcache.Failure.LOST, now=t)
        pathcache.record("198.18.0.3", 80, pathcache.Failure.RESET, now=t)
        assert (first.retry_at, second.retry_at) == (t + 60, t + 120)
        assert second.note(now=t).endswith("lost on this path 2 times, retry in 2 min")
        assert pathcache.lookup("198.18.0.2", 80, now=t + 119) == second
        assert pathcache.lookup("198.18.0.2", 80, now=t + 120) is None  # probation: try TFO
        assert pathcache.reset("198.18.0.2") == 1
        assert [e.address for e in pathcache.entries()] == ["198.18.0.3"]
    # another namespace has a cache of its own
    assert pathcache.entries() == []


@pytest.mark.parametrize("box", ["drop-syn-data", "reset-syn-data"])
def test_userspace_client_learns_too(
    box: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_namespaces()
    monkeypatch.setenv("FASTOPEN_PATHS_DIR", str(tmp_path))
    with Lab(middleboxes=[box]) as lab, kernel_echo(lab.server, SERVER.ipv4, 8080):

        async def requests() -> list[fastopen.TfoReport]:
            reports = []
            with UserspaceStack.replace_kernel(lab.client) as stack:
                for _ in range(4):
                    reader, writer = await stack.open_connection(
                        SERVER.ipv4, 8080, first_flight=REQUEST
                    )
                    assert (await reader.read(200)).startswith(b"ok:")
                    reports.append(writer.get_extra_info("fastopen"))
                    writer.close()
            return reports

        reports = asyncio.run(requests())
        with lab.client.entered():
            [entry] = pathcache.entries()
    how = pathcache.Failure.LOST if box == "drop-syn-data" else pathcache.Failure.RESET
    assert (entry.reason, entry.failures) == (how, 1)
    assert reports[0].fail_reason is FailReason.NO_COOKIE
    if box == "drop-syn-data":  # the 2nd lost its SYN data; the 3rd and 4th skip TFO
        assert reports[1].fail_reason is FailReason.SYN_RETRANSMITTED
    else:  # the 2nd was reset, and went again at once without TFO
        assert reports[1].off_reason is OffReason.PATH_BLOCKED
    assert all(r.off_reason is OffReason.PATH_BLOCKED for r in reports[2:])


def test_paths_command(netns: Netns, tmp_path: Path) -> None:
    env = {**os.environ, "FASTOPEN_PATHS_DIR": str(tmp_path)}
    fastopen_cmd = [str(Path(sys.executable).parent / "fastopen"), "paths", "--netns", netns.name]
    with netns.entered():
        os.environ["FASTOPEN_PATHS_DIR"] = str(tmp_path)
        try:
            pathcache.record("198.18.0.2", 443, pathcache.Failure.RESET)
            pathcache.record("fd00:f0::2", 80, pathcache.Failure.LOST)
        finally:
            del os.environ["FASTOPEN_PATHS_DIR"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*fastopen_cmd, *args], capture_output=True, text=True, env=env, check=False
        )

    listed = check(["paths"], json.loads(run("--json").stdout))["entries"]
    assert sorted((e["address"], e["port"], e["reason"]) for e in listed) == [
        ("198.18.0.2", 443, "reset"),
        ("fd00:f0::2", 80, "lost"),
    ]
    assert (
        check(["paths", "reset"], json.loads(run("reset", "--json", "[fd00:f0::2]:80").stdout))[
            "reset"
        ]
        == 1
    )
    assert [e["port"] for e in json.loads(run("list", "--json").stdout)["entries"]] == [443]
    assert run("reset").stdout.strip() == "reset 1 path(s)"
    assert json.loads(run("--json").stdout)["entries"] == []
    bad = run("reset", "host:port")
    assert bad.returncode == 2 and "give ADDRESS or ADDRESS:PORT" in bad.stderr
