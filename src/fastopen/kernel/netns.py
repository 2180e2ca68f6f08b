"""Network namespaces as the kernel has them: entering one, and telling which one a thread is in.

These are the primitives the layers above share (``fastopen.lab.netns`` makes and removes the
``fo-...`` namespaces; operations keep their state per namespace; the runtime enters them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastopen.errors import NamespaceError, NeedsRoot

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
#: The network namespace of the calling thread.
THREAD_NS = "/proc/thread-self/ns/net"


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            raise NeedsRoot("entering a network namespace needs root", hint="run as root")
        raise NamespaceError(f"setns failed: {os.strerror(code)}")


RUN_NETNS = Path("/run/netns")
#: ioctl(2) on a namespace file: which kind of namespace it is (Linux 4.11+).
NS_GET_NSTYPE = 0xB703
#: The inode of the kernel's first network namespace (PROC_NET_INIT_INO, fixed since Linux 3.8).
INIT_NET_INODE = 0xEFFFFFF9


def namespace_path(netns: str) -> Path:
    """The file of the network namespace ``netns``: a name (``/run/netns/NAME``, as ``ip netns``
    makes them) or a path to a namespace file (``/proc/PID/ns/net``, a bind mount).

    Refuses an empty name, ``.``/``..`` and any path with a ``..`` component (no traversal out of
    ``/run/netns`` by a name that looks like one).
    """
    text = netns.strip()
    if not text:
        raise NamespaceError(
            "an empty network namespace name", hint="give a name from `ip netns list` or a path"
        )
    if ".." in Path(text).parts or text == ".":
        raise NamespaceError(
            f"{netns!r} is not a network namespace name",
            hint="give a name from `ip netns list`, or a path without '..' such as "
            "/proc/PID/ns/net",
        )
    return Path(text) if "/" in text else RUN_NETNS / text


def _open_namespace(netns: str) -> Any:
    path = namespace_path(netns)
    try:
        target = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise NamespaceError(
            f"no network namespace {netns!r} ({path} does not exist)", hint="see `ip netns list`"
        ) from None
    except PermissionError:
        raise NeedsRoot(f"entering network namespace {netns!r} needs root") from None
    except OSError as exc:
        raise NamespaceError(f"cannot open {path}: {exc.strerror}") from None
    try:
        kind = fcntl.ioctl(target.fileno(), NS_GET_NSTYPE)
    except OSError:
        kind = None
    if kind != CLONE_NEWNET:
        target.close()
        raise NamespaceError(
            f"{path} is not a network namespace",
            hint="give a name from `ip netns list` or a file such as /proc/PID/ns/net",
        )
    return target


@contextlib.contextmanager
def entered(netns: str) -> Iterator[None]:
    """Move the calling thread into the network namespace ``netns`` (a name or a path, see
    :func:`namespace_path`).

    Sockets made in the block stay in that namespace; threads and processes started in it are
    born there. The thread goes back to its own namespace when the block ends.
    """
    with open(THREAD_NS, "rb") as home, _open_namespace(netns) as target:
        setns(target.fileno())
        try:
            yield
        finally:
            setns(home.fileno())


@dataclass(frozen=True)
class Identity:
    """Which network namespace the calling thread is in: the first process's (the host's), one
    with a name in ``/run/netns``, or an unnamed one known by its inode."""

    inode: int
    host: bool
    name: str | None

    @property
    def label(self) -> str:
        """``host``, the namespace's name, or ``inode-N``."""
        if self.host:
            return "host"
        return self.name if self.name is not None else f"inode-{self.inode}"


def _ns_id(path: Path | str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def identify() -> Identity:
    """The network namespace of the calling thread, however it got there (``--netns``,
    ``ip netns exec``, a container): by the inode of its namespace file, compared with PID 1's
    and with the bind mounts in ``/run/netns`` (what ``ip netns identify`` does)."""
    here = _ns_id(THREAD_NS)
    try:
        host = _ns_id("/proc/1/ns/net") == here
    except PermissionError:  # PID 1 has capabilities we lack (no CAP_SYS_PTRACE, say)
        host = here[1] == INIT_NET_INODE
    name = None
    if not host and RUN_NETNS.is_dir():
        for entry in sorted(RUN_NETNS.iterdir()):
            with contextlib.suppress(OSError):
                if _ns_id(entry) == here:
                    name = entry.name
                    break
    return Identity(here[1], host, name)
