"""Network namespaces that fastopen creates (always named ``fo-...``) and always removes again.

A :class:`Netns` is a context manager: on every exit path, exceptions included, it stops the
processes it started and deletes the namespace. Namespaces still open when the interpreter exits
(an unhandled signal turned into SystemExit, say) are removed by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fastopen.errors import KernelFeatureMissing, NamespaceError, NeedsRoot
from fastopen.kernel import counters as _counters
from fastopen.kernel import sysctl as _sysctl
from fastopen.kernel.netns import RUN_NETNS, entered

PREFIX = "fo-"
_open: dict[str, Netns] = {}


def check_support() -> None:
    """Raise a clear error unless this process can create network namespaces."""
    if os.geteuid() != 0:
        raise NeedsRoot(
            "network namespaces need root", hint="run as root (sudo), or in CI with CI=true"
        )
    if shutil.which("ip") is None:
        raise KernelFeatureMissing("the ip command is missing", hint="apt-get install iproute2")
    if not Path("/proc/self/ns/net").exists():
        raise KernelFeatureMissing("this kernel has no network namespaces (CONFIG_NET_NS)")


def _ip(*args: str) -> None:
    """Run ``ip ARGS``. Interrupted (a signal turned into an exception), it is killed and waited
    for before the exception goes on, so that the clean-up that follows sees what it made
    (subprocess.run waits a quarter of a second for a child after a KeyboardInterrupt)."""
    with subprocess.Popen(
        ["ip", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            _, err = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if proc.returncode != 0:
        raise NamespaceError(f"ip {' '.join(args)} failed: {err.strip()}")


def new_name(tag: str) -> str:
    """A fresh namespace name, ``fo-<tag>-<random>``, to record before creating it."""
    return f"{PREFIX}{tag}-{secrets.token_hex(3)}"


@dataclass
class Netns:
    """One network namespace, named ``fo-<tag>-<random>`` (or ``name``, chosen and recorded
    beforehand with :func:`new_name`), with loopback up.

    The namespace is registered for removal before ``ip netns add`` runs, so a signal that lands
    while it runs (KeyboardInterrupt, SystemExit) still removes whatever it made.
    """

    tag: str = "ns"
    name: str = ""
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        check_support()
        if not self.name:
            self.name = new_name(self.tag)
        if not self.name.startswith(PREFIX) or "/" in self.name:
            raise NamespaceError(f"fastopen makes namespaces named {PREFIX}..., not {self.name}")
        _open[self.name] = self
        try:
            _ip("netns", "add", self.name)
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    # -- running things inside -------------------------------------------------------------
    def ip(self, *args: str) -> None:
        """Run ``ip ARGS`` inside the namespace."""
        _ip("-n", self.name, *args)

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float | None = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (output captured as text)."""
        kw.setdefault("capture_output", True)
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *args],
            check=check,
            timeout=timeout,
            text=True,
            **kw,
        )

    def popen(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start a process inside the namespace; it is stopped when the namespace closes."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *args], start_new_session=True, **kw
        )
        self._procs.append(proc)
        return proc

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Move the calling thread into the namespace for the block (sockets made there stay)."""
        with entered(self.name):
            yield

    def sysctl(self, name: str, value: str | int | None = None) -> str:
        """Read, or set then read, a sysctl of this namespace."""
        with self.entered():
            if value is not None:
                _sysctl.write(name, value)
            return _sysctl.read(name)

    def counters(self) -> dict[str, int]:
        """The TFO TcpExt counters of this namespace."""
        with self.entered():
            return _counters.tfo_counters()

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=3)
        _open.pop(self.name, None)
        remove(self.name)

    def keep(self) -> None:
        """Leave the namespace in place after this process exits (``fastopen lab up``)."""
        self._closed = True
        _open.pop(self.name, None)

    def __enter__(self) -> Netns:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def remove(name: str) -> None:
    """Kill whatever still runs in namespace ``name`` (a daemonized nginx, say), then delete it."""
    pids = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    # `ip netns add` interrupted between making the file and mounting it leaves the bare file
    with contextlib.suppress(OSError):
        (RUN_NETNS / name).unlink()


@dataclass(frozen=True)
class Addresses:
    """The addresses of one end of a lab link."""

    ipv4: str
    ipv6: str


CLIENT = Addresses("198.18.0.1", "fd00:f0::1")
SERVER = Addresses("198.18.0.2", "fd00:f0::2")


def link_address(ns: Netns, dev: str) -> str:
    """The hardware address of device ``dev`` in namespace ``ns``."""
    out = subprocess.run(
        ["ip", "-n", ns.name, "-j", "link", "show", "dev", dev],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise NamespaceError(f"no device {dev} in {ns.name}: {out.stderr.strip()}")
    address: str = json.loads(out.stdout)[0]["address"]
    return address


def veth_link(
    a: Netns, b: Netns, *, a_addr: Addresses = CLIENT, b_addr: Addresses = SERVER, mtu: int = 1500
) -> None:
    """Join two namespaces with a veth pair named ``eth0`` on both sides, IPv4 and IPv6 up."""
    _ip(
        "link", "add", "name", "eth0", "netns", a.name, "mtu", str(mtu), "type", "veth",
        "peer", "name", "eth0", "netns", b.name, "mtu", str(mtu),
    )  # fmt: skip
    for ns, addr in ((a, a_addr), (b, b_addr)):
        ns.ip("addr", "add", f"{addr.ipv4}/24", "dev", "eth0")
        ns.ip("-6", "addr", "add", f"{addr.ipv6}/64", "dev", "eth0", "nodad")
        ns.ip("link", "set", "eth0", "up")
    # Static neighbours: no ARP or neighbour discovery delays the first packet of a test.
    for ns, peer, peer_addr in ((a, b, b_addr), (b, a, a_addr)):
        lladdr = link_address(peer, "eth0")
        for ip in (peer_addr.ipv4, peer_addr.ipv6):
            ns.ip("neigh", "replace", ip, "lladdr", lladdr, "dev", "eth0", "nud", "permanent")


def enable_tfo(ns: Netns, bits: int = 0x3) -> None:
    """Turn kernel TFO on in a namespace (client and server by default)."""
    ns.sysctl("net.ipv4.tcp_fastopen", bits)


@atexit.register
def _remove_leftovers() -> None:
    for ns in list(_open.values()):
        ns.close()
