"""``fastopen serve --stack userspace`` and ``fastopen get --stack userspace`` in a namespace.

The server's stack owns 198.18.1.2 behind ``fous0``; a userspace client owns 198.18.2.2 behind
``fous1``; the namespace's kernel (198.18.0.1 on lo) is a client too and routes between the two.
"""

from __future__ import annotations

import json
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

    bad = netns.run([FASTOPEN, "get", "--stack", "userspace", URL], check=False)
    assert bad.returncode == 2 and "--stack userspace needs --address" in bad.stderr

    proc.terminate()
    log = proc.communicate(timeout=5)[0].splitlines()
    assert [line.split()[0].rsplit(":", 1)[0] for line in log] == ["198.18.0.1"] * 2 + [
        "198.18.2.2"
    ] * 2
    assert ["SYN data received yes" in line for line in log] == [False, True] * 2
