"""``fastopen serve`` and ``fastopen get`` on the kernel stack, with curl as a second client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from fastopen.lab.netns import SERVER, Netns

FASTOPEN = str(Path(sys.executable).with_name("fastopen"))
URL = f"http://{SERVER.ipv4}:8080/"


def test_serve_and_get(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    proc = server.popen(
        [FASTOPEN, "serve", SERVER.ipv4, "8080", "--body", "tfo!\n"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("serving http://198.18.0.2:8080/")

    got = client.run([FASTOPEN, "get", URL, "--repeat", "2", "--json"]).stdout.splitlines()
    first, second = (json.loads(line) for line in got)
    assert first["status"] == second["status"] == 200 and second["body_bytes"] == 5
    assert first["fastopen"]["cookie_requested"] and not first["fastopen"]["syn_data_acked"]
    assert second["fastopen"]["syn_data_acked"] and second["fastopen"]["fail_reason"] is None
    assert second["ttfb_ms"] > 0 and second["total_ms"] >= second["ttfb_ms"]
    assert second["time"] >= first["time"]

    text = client.run([FASTOPEN, "get", URL]).stdout
    assert text.startswith("1: 200 OK  ttfb ") and "SYN data acknowledged yes" in text

    # curl shares the kernel's cookie cache: its GET rides in the SYN too
    curl = client.run(["curl", "-s", "--tcp-fastopen", URL]).stdout
    assert curl == "tfo!\n"
    post = client.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "x", URL])
    assert post.stdout == "405"
    with client.entered():
        raw = socket.create_connection((SERVER.ipv4, 8080), timeout=5)
    with raw:
        raw.sendall(b"NOT HTTP\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400 Bad Request")

    refused = client.run([FASTOPEN, "get", f"http://{SERVER.ipv4}:8081/"], check=False)
    assert refused.returncode == 2 and "ECONNREFUSED" in refused.stderr
    as_json = client.run([FASTOPEN, "get", f"http://{SERVER.ipv4}:8081/", "--json"], check=False)
    error = json.loads(as_json.stdout)  # an error is JSON too
    assert error["exit_code"] == 2 and "ECONNREFUSED" in error["error"]

    proc.terminate()
    log = proc.communicate(timeout=5)[0].splitlines()
    assert [line.split()[1:3] for line in log] == [
        ["GET", "200"],
        ["GET", "200"],
        ["GET", "200"],
        ["GET", "200"],
        ["POST", "405"],
        ["-", "400"],
    ]
    assert "came in by TFO no" in log[0]
    assert all("SYN data received yes" in line for line in log[1:4])
