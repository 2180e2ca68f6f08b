"""``fastopen serve --stack userspace`` and ``fastopen get --stack userspace`` in a namespace.

The server's stack owns 198.18.1.2 behind ``fous0``; a userspace client owns 198.18.2.2 behind
``fous1``; the namespace's kernel (198.18.0.1 on lo) is a client too and routes between the two.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

from fastopen.lab.netns import Netns
from fastopen.pcap import read_pcap
from fastopen.wire import PROTO_TCP, Flags, parse_ip, parse_tcp_packet

FASTOPEN = str(Path(sys.executable).with_name("fastopen"))
URL = "http://198.18.1.2:8080/"


def test_serve_and_get_on_the_userspace_stack(netns: Netns, tmp_path: Path) -> None:
    netns.ip("addr", "add", "198.18.0.1/32", "dev", "lo")
    netns.sysctl("net.ipv4.ip_forward", 1)
    proc = netns.popen(
        [FASTOPEN, "serve", "--stack", "userspace", "--address", "198.18.1.2/24",
         "--body", "engine!\n", "198.18.1.2", "8080"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert (
        proc.stdout.readline() == "serving http://198.18.1.2:8080/ with TFO on (userspace stack)\n"
    )

    # the kernel as the client
    got = netns.run([FASTOPEN, "get", URL, "--repeat", "2", "--json"]).stdout.splitlines()
    first, second = (json.loads(line) for line in got)
    assert first["status"] == second["status"] == 200 and second["body_bytes"] == 8
    assert first["fastopen"]["cookie_requested"] and second["fastopen"]["syn_data_acked"]

    # a userspace client, its packets routed by the kernel from fous1 to fous0
    text = netns.run(
        [FASTOPEN, "get", "--stack", "userspace", "--tun", "fous1", "--address",
         "198.18.2.2/24", "--pcap", str(tmp_path / "get.pcap"), URL, "--repeat", "2"]
    ).stdout.splitlines()  # fmt: skip
    assert text[0].startswith("1: 200 OK  ttfb ") and "cookie requested yes" in text[0]
    assert "SYN data acknowledged yes" in text[1]
    # its capture: two connections, the second SYN carrying the GET
    packets = [p.data for p in read_pcap(tmp_path / "get.pcap")]
    segments = [parse_tcp_packet(p)[1] for p in packets if parse_ip(p).protocol == PROTO_TCP]
    syns = [s for s in segments if s.flags == Flags.SYN]
    assert [s.payload[:14] for s in syns] == [b"", b"GET / HTTP/1.1"]

    bad = netns.run(
        [FASTOPEN, "get", "--stack", "userspace", "--address", "x/24", URL], check=False
    )
    assert bad.returncode == 2 and "--address" in bad.stderr

    proc.terminate()
    log = proc.communicate(timeout=5)[0].splitlines()
    assert [line.split()[0].rsplit(":", 1)[0] for line in log] == ["198.18.0.1"] * 2 + [
        "198.18.2.2"
    ] * 2
    assert ["SYN data received yes" in line for line in log] == [False, True] * 2


def test_file_and_output_on_the_namespaces_own_addresses(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    """Without --address, serve and get on the userspace stack take over the addresses of their
    namespaces (198.18.0.2 and 198.18.0.1 on the veth pair) and give them back when they end; a
    1 MiB body from --file (the server with --offloads and Reno) arrives whole in --output."""
    client, server = netns_pair
    body = tmp_path / "body.bin"
    body.write_bytes(hashlib.sha256(b"body").digest() * (1 << 15))
    before = {ns.name: _addresses(ns) for ns in netns_pair}
    proc = server.popen(
        [FASTOPEN, "serve", "--stack", "userspace", "--offloads", "--congestion", "reno",
         "--file", str(body), "-q", "198.18.0.2", "8080"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "userspace stack" in proc.stdout.readline()
        assert "198.18.0.2/24" not in _addresses(server)  # the stack has it now
        got = tmp_path / "got.bin"
        client.run(
            [FASTOPEN, "get", "--stack", "userspace", "--output", str(got),
             "http://198.18.0.2:8080/", "--repeat", "2"]
        )  # fmt: skip
        assert got.read_bytes() == body.read_bytes()
        assert _addresses(client) == before[client.name]  # given back
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert _addresses(server) == before[server.name]


def _addresses(ns: Netns) -> set[str]:
    shown = ns.run(["ip", "-j", "addr", "show", "scope", "global"]).stdout
    return {
        f"{a['local']}/{a['prefixlen']}"
        for link in json.loads(shown)
        for a in link.get("addr_info", ())
        if a.get("scope") == "global"
    }
