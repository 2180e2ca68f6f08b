"""A redis-server of the test's own, on a unix socket in a temporary folder, stopped on every exit
path (the process is killed if it does not stop)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from fastopen.lab.netns import Netns


class RedisServer:
    """``redis-server`` listening only on ``<folder>/redis.sock`` (no TCP port, no persistence).

    ``ns``: start it inside that network namespace (a unix socket is reachable from every
    namespace of the host, as a farm's Redis would be from each server).
    """

    def __init__(self, folder: Path, ns: Netns | None = None) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is missing: ./dev installs the Debian package redis-server")
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.ns = ns
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        args = [
            "redis-server", "--port", "0", "--unixsocket", str(self.socket),
            "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--loglevel", "warning",
        ]  # fmt: skip
        self.socket.unlink(missing_ok=True)
        if self.ns is None:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        else:
            self.process = self.ns.popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("redis-server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Kill it (SIGKILL: the way a crash or an unplugged host ends it)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
