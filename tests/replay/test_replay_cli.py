"""``fastopen serve --replay-guard``: a replayed SYN gets 425 for its POST and is flagged in the
request log; the store is an SQLite file (several processes of one host); bad stores are clear
errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from replayapp import replay_twice

from fastopen.cookies import KeyRing
from fastopen.lab.netns import SERVER, Netns

pytestmark = pytest.mark.live
FASTOPEN = str(Path(sys.executable).with_name("fastopen"))


def test_serve_answers_a_replayed_post_too_early(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    client, server = netns_pair
    ring = KeyRing.generate()
    server.sysctl("net.ipv4.tcp_fastopen_key", ring.to_text())
    db = tmp_path / "replay.db"
    args = [FASTOPEN, "serve", SERVER.ipv4, "8080", "--replay-guard", f"sqlite:{db}"]
    args += ["--replay-quarantine", "off", "--server-id", "web-1"]
    proc = server.popen(args, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("serving http://198.18.0.2:8080/")
        assert f"replay guard sqlite:{db}" in banner

        def wait(count: int) -> None:
            assert proc.stdout is not None
            while len(lines) < count:
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"fastopen serve ended: {lines}")
                lines.append(line)

        replay_twice(client, "198.18.0.9", SERVER.ipv4, 8080, ring, wait)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [line.split()[1:3] for line in lines] == [
        ["POST", "405"],
        ["POST", "425"],
        ["GET", "200"],
        ["GET", "200"],
    ]
    flagged = [("replay suspected (first delivered by web-1)" in line) for line in lines]
    assert flagged == [False, True, False, True]
    assert db.exists()


def test_serve_rejects_a_bad_store(netns: Netns, tmp_path: Path) -> None:
    for spec, words in [
        ("memcache://x", "unknown replay store"),
        (f"sqlite:{tmp_path}/missing/r.db", "cannot open the replay store"),
    ]:
        started = time.monotonic()
        out = netns.run(
            [FASTOPEN, "serve", "127.0.0.1", "8080", "--replay-guard", spec], check=False
        )
        assert out.returncode != 0 and words in out.stderr, out.stderr
        assert time.monotonic() - started < 30
