"""The lab link: two namespaces joined by TUN devices and the forwarder, impaired as configured."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_namespaces
from tfo import default_sigint

from fastopen.lab.emulator import Lab
from fastopen.lab.link import LinkConfig
from fastopen.lab.netns import Netns, remove

pytestmark = pytest.mark.live
PORT = 7000
SO_RCVBUFFORCE = 33  # Linux; Python's socket module lacks it


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _alive(pid: int) -> bool:
    try:
        return b"fastopen.lab.link" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _udp(ns: Netns, family: socket.AddressFamily) -> socket.socket:
    with ns.entered():
        sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 22)
    return sock


def _collect(sock: socket.socket, out: list[int], quiet: float = 0.3) -> None:
    """Read sequence numbers until nothing arrives for ``quiet`` seconds."""
    sock.settimeout(quiet)
    while True:
        try:
            data = sock.recv(64)
        except TimeoutError:
            return
        out.append(int.from_bytes(data[:4], "big"))


def _blast(lab: Lab, count: int) -> list[int]:
    """Send ``count`` numbered datagrams client to server; the numbers in the order they came."""
    rx = _udp(lab.server, socket.AF_INET)
    tx = _udp(lab.client, socket.AF_INET)
    with rx, tx:
        rx.bind((lab.server_addr.ipv4, PORT))
        received: list[int] = []
        reader = threading.Thread(target=_collect, args=(rx, received))
        reader.start()
        for seq in range(count):
            tx.sendto(seq.to_bytes(4, "big") + b"x" * 60, (lab.server_addr.ipv4, PORT))
        reader.join()
    return received


@pytest.mark.parametrize(
    ("family", "attr"), [(socket.AF_INET, "ipv4"), (socket.AF_INET6, "ipv6")], ids=["v4", "v6"]
)
def test_link_forwards_both_ways(family: socket.AddressFamily, attr: str) -> None:
    require_namespaces()
    with Lab() as lab:
        server = _udp(lab.server, family)
        client = _udp(lab.client, family)
        with server, client:
            server.bind((getattr(lab.server_addr, attr), PORT))
            server.settimeout(5)
            client.settimeout(5)
            for i in range(5):
                client.sendto(b"ping %d" % i, (getattr(lab.server_addr, attr), PORT))
                data, peer = server.recvfrom(100)
                assert data == b"ping %d" % i
                assert peer[0] == getattr(lab.client_addr, attr)
                server.sendto(b"pong %d" % i, peer)
                assert client.recv(100) == b"pong %d" % i
        stats = lab.stats()
    assert stats.c2s.forwarded >= 5
    assert stats.s2c.forwarded >= 5


def test_tcp_connect_takes_at_least_the_rtt() -> None:
    require_namespaces()
    with Lab(rtt=0.05) as lab:
        with lab.server.entered():
            listener = socket.create_server((lab.server_addr.ipv4, PORT))
        with listener:
            with lab.client.entered():
                client = socket.socket()
            with client:
                start = time.perf_counter()
                client.connect((lab.server_addr.ipv4, PORT))
                elapsed = time.perf_counter() - start
    assert elapsed >= 0.05


def test_impairments_show_in_counts_and_repeat_with_the_seed() -> None:
    require_namespaces()
    count = 300
    config: dict[str, Any] = {"delay": 0.001, "loss": 0.1, "duplicate": 0.05, "reorder": 0.1}
    runs = []
    for seed in (7, 7, 8):
        with Lab(**{**config, "seed": seed}) as lab:
            received = _blast(lab, count)
            runs.append((received, lab.stats().c2s))
    (first, stats), (second, again), (other, _) = runs
    assert stats.received == count
    assert stats.dropped > 0 and stats.duplicated > 0 and stats.reordered > 0
    # Every count shows in what the receiver got.
    missing = set(range(count)) - set(first)
    assert len(missing) == stats.dropped
    assert len(first) == count - stats.dropped + stats.duplicated
    assert first != sorted(first)  # some datagrams overtook others
    # The same seed: the same datagrams lost, duplicated and held back; another seed: others.
    assert sorted(second) == sorted(first)
    assert again == stats
    assert set(range(count)) - set(other) != missing


def test_rate_limit_queues_and_overflows() -> None:
    require_namespaces()
    # 64 kbit/s is about 120 of these datagrams a second: a burst of 300 overflows a queue of 20.
    with Lab(rate=64_000, queue=20) as lab:
        received = _blast(lab, 300)
        stats = lab.stats().c2s
    assert stats.overflowed > 0
    assert len(received) == stats.received - stats.overflowed
    assert received == sorted(received)


def test_configure_changes_the_running_link() -> None:
    require_namespaces()
    with Lab() as lab:
        lab.configure(loss=1.0)
        assert _blast(lab, 20) == []
        assert lab.config == LinkConfig(loss=1.0)
        lab.configure(loss=0.0)
        assert _blast(lab, 20) == list(range(20))


def test_lab_cleans_up_after_an_exception() -> None:
    require_namespaces()
    with pytest.raises(RuntimeError), Lab(rtt=0.01) as lab:
        names = {lab.client.name, lab.server.name}
        pid = lab.forwarder_pid
        assert names <= _namespaces()
        raise RuntimeError("boom")
    assert not names & _namespaces()
    assert not _alive(pid)


_SCRIPT = """
import sys, time
from fastopen.lab.emulator import Lab
with Lab(rtt=0.01) as lab:
    print(lab.client.name, lab.server.name, lab.forwarder_pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_lab_cleans_up_on_signals(signum: signal.Signals) -> None:
    require_namespaces()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    client = server = ""
    try:
        assert proc.stdout is not None
        client, server, pid = proc.stdout.readline().split()
        assert {client, server} <= _namespaces()
        assert _alive(int(pid))
        os.kill(proc.pid, signum)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            for name in (client, server):  # a killed process could remove nothing
                if name:
                    remove(name)
    assert not {client, server} & _namespaces()
    assert not _alive(int(pid))


def test_forwarder_exits_when_its_parent_dies() -> None:
    require_namespaces()
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT], stdout=subprocess.PIPE, text=True)
    names: list[str] = []
    try:
        assert proc.stdout is not None
        *names, pid = proc.stdout.readline().split()
        proc.kill()  # no cleanup can run: the forwarder must notice on its own
        proc.wait(timeout=15)
        deadline = time.monotonic() + 10
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(int(pid))
    finally:
        for name in names:
            remove(name)  # a killed process leaves its namespaces: nothing could remove them
