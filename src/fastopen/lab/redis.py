"""A redis-server of the lab's own: the store a farm's servers share (the replay guard's), for the
tests and benchmarks. It listens only on a unix socket in a folder of the caller's (no TCP port,
nothing saved) and is killed on every exit path (an ``atexit`` hook kills any still running when
the interpreter exits)."""

from __future__ import annotations

import atexit
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from fastopen.errors import FastOpenError, KernelFeatureMissing
from fastopen.lab.netns import Netns

_running: set[RedisServer] = set()


class RedisServer:
    """``redis-server`` listening only on ``<folder>/redis.sock`` (no TCP port, no persistence).

    ``ns``: start it inside that network namespace (a unix socket is reachable from every
    namespace of the host, as a farm's Redis would be from each server).
    """

    def __init__(
        self, folder: Path, ns: Netns | None = None, *, timeout: float | None = None
    ) -> None:
        if shutil.which("redis-server") is None:
            raise KernelFeatureMissing(
                "redis-server is missing", hint="./dev installs the Debian package redis-server"
            )
        self.folder = folder
        self.socket = folder / "redis.sock"
        #: The client's URL (``timeout``: the redis client's socket timeouts, in its query).
        self.url = f"unix://{self.socket}"
        if timeout is not None:
            self.url += f"?socket_timeout={timeout}&socket_connect_timeout={timeout}"
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
        _running.add(self)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FastOpenError(
                    f"redis-server did not start on {self.socket}",
                    hint="is the folder writable? is the socket path under 100 characters?",
                )
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Kill it (SIGKILL: the way a crash or an unplugged host ends it)."""
        _running.discard(self)
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


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_running):
        server.stop()
