"""The farm behind a direct-server-return load balancer: steering, shared keys, the seed's third
duplicate case (SYN-ACK lost, the retransmitted SYN lands on another server)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_namespaces

from fastopen.constants import MSG_FASTOPEN
from fastopen.lab.farm import Farm

pytestmark = pytest.mark.live
PORT = 8080


@pytest.fixture(params=[True, False], ids=["shared-key", "own-keys"])
def farm(request: pytest.FixtureRequest) -> Iterator[Farm]:
    require_namespaces()
    with Farm(servers=2, shared_key=request.param, policy=0) as farm:
        yield farm


def tfo_request(farm: Farm, data: bytes) -> bytes:
    """One kernel TFO request (sendto MSG_FASTOPEN) from the farm's client to the VIP."""
    with farm.client.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        sock.sendto(data, MSG_FASTOPEN, (farm.vip, PORT))
        sock.settimeout(5)
        return sock.recv(100)


def test_cookie_from_one_server_on_the_other(farm: Farm) -> None:
    with farm.serve(PORT) as served:
        assert tfo_request(farm, b"first") == b"s0:first"  # asks server 0 for a cookie
        farm.steer(1)
        before = farm.servers[1].counters()
        assert tfo_request(farm, b"second") == b"s1:second"
        after = farm.servers[1].counters()
    passive = after["TCPFastOpenPassive"] - before["TCPFastOpenPassive"]
    failed = after["TCPFastOpenPassiveFail"] - before["TCPFastOpenPassiveFail"]
    if farm.shared_key:
        assert (passive, failed) == (1, 0)  # server 0's cookie is good on server 1
    else:
        assert (passive, failed) == (0, 1)  # refused: the data came after the handshake
    assert [s.requests for s in served] == [[b"first"], [b"second"]]


def test_hash_policy_keeps_a_client_port_on_one_server(farm: Farm) -> None:
    farm.steer("hash")
    with farm.serve(PORT) as served:
        for _ in range(6):
            assert tfo_request(farm, b"x")[:1] == b"s"
    assert sum(len(s.requests) for s in served) == 6


def test_lost_syn_ack_makes_the_request_run_twice() -> None:
    require_namespaces()
    with Farm(servers=2, shared_key=True, policy=0) as farm, farm.serve(PORT) as served:
        tfo_request(farm, b"warm-up")  # the client now has a cookie good on both servers
        farm.steer("round_robin")  # this SYN to server 0, its retransmission to server 1
        # server 0's SYN-ACK is lost, and so are its own retransmissions of it
        farm.drop_syn_acks(6, server=0)
        assert tfo_request(farm, b"pay") == b"s1:pay"
        assert farm.syn_acks_dropped >= 1
    # server 0 took the request from the SYN; server 1 got it again after the handshake
    assert served[0].requests == [b"warm-up", b"pay"]
    assert served[1].requests == [b"pay"]


def test_lab_farm_up_and_down(tmp_path: Path) -> None:
    require_namespaces()
    fastopen = str(Path(sys.executable).parent / "fastopen")
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(tmp_path / "lab.json")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([fastopen, "lab", "farm", *args], capture_output=True, text=True,
                              env=env, timeout=60, check=False)  # fmt: skip

    up = cli("up", "--servers", "3", "--own-keys")
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "farm.json").read_text())
    try:
        assert len(state["servers"]) == 3 and state["shared_key"] is False
        keys = {
            subprocess.run(
                ["ip", "netns", "exec", name, "sysctl", "-n", "net.ipv4.tcp_fastopen_key"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for name in state["servers"]
        }
        assert len(keys) == 3  # each server its own key
        again = cli("up")
        assert again.returncode == 2 and "a farm is already up" in again.stderr
    finally:
        down = cli("down")
    assert down.returncode == 0, down.stderr
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in [state["client"], state["lb"], *state["servers"]])
    assert not (tmp_path / "farm.json").exists()
