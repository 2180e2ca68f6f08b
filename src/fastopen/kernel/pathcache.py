"""The client's negative cache: paths on which SYN data was lost or reset go without TFO a while.

Linux counts SYN-data losses per destination (``fo_syn_drops`` in ``tcp_metrics``) but keeps
sending data in SYNs (its blackhole detection is off by default since 5.14), so behind a box that
drops SYNs with data every connection waits for the 1 s SYN timeout. FreeBSD and Apple turn TFO
off on such a path instead; fastopen does too, for both its stacks. After SYN data was lost (the
kernel's ``tcpi_fastopen_client_fail`` = 3: the SYN was retransmitted without its data), or
answered with a reset, or after a cookie request needed a retransmitted SYN, the next
connections to that address and port go out as a plain connect (no TFO option at all) until a
backoff has passed; it starts at :data:`BASE_BACKOFF` and doubles with each failure. Then TFO
is tried again: a success clears the entry, a failure doubles the wait.

The cache is one small JSON file per network namespace (the processes of a host share it),
``/run/fastopen/paths/<namespace cookie>.json``, or ``$FASTOPEN_PATHS_DIR``; where it cannot be
written it lives in the process only. It stays small: an entry is forgotten once TFO has been
back on its path for :data:`MAX_BACKOFF` (as ``tcp_metrics`` ages its entries out), and every
write removes the files no process wrote for twice that (their namespaces are gone: cookies are
never reused). ``$FASTOPEN_TFO_BACKOFF`` sets the first backoff (seconds).
:func:`entries` lists it, :func:`reset` clears it (``fastopen paths``, ``fastopen paths reset``).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastopen.errors import FastOpenError
from fastopen.report import FailReason, OffReason, TfoReport

#: The first backoff, in seconds (FreeBSD's fixed ``path_disable_time`` is 900).
BASE_BACKOFF = 240.0
#: The longest backoff: a day.
MAX_BACKOFF = 86400.0
DIR = Path("/run/fastopen/paths")
_NS = "/proc/thread-self/ns/net"


class Failure(enum.Enum):
    """How SYN data failed on a path."""

    LOST = "lost"
    RESET = "reset"
    #: A SYN with the TFO option (a cookie request) went unanswered; the plain one was not.
    OPTION_LOST = "option-lost"


_FAILURE_TEXT = {
    Failure.LOST: "SYN data was lost",
    Failure.RESET: "SYN data was answered with a reset",
    Failure.OPTION_LOST: "a SYN with the TFO option was lost",
}


@dataclass(frozen=True)
class PathEntry:
    """One path on which SYN data failed: how often, how, when last, and when TFO comes back."""

    address: str
    port: int
    failures: int
    reason: Failure
    last: float
    retry_at: float

    def note(self, now: float | None = None) -> str:
        """``TFO skipped: SYN data was lost on this path 2 times, retry in 8 min``."""
        left = max(0.0, self.retry_at - (time.time() if now is None else now))
        times = "1 time" if self.failures == 1 else f"{self.failures} times"
        return (
            f"TFO skipped: {_FAILURE_TEXT[self.reason]} on this path {times}, "
            f"retry in {_duration(left)}"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["reason"] = self.reason.value
        return data


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"


def base_backoff() -> float:
    """The first backoff: ``$FASTOPEN_TFO_BACKOFF`` seconds, or :data:`BASE_BACKOFF`."""
    text = os.environ.get("FASTOPEN_TFO_BACKOFF")
    if text is None:
        return BASE_BACKOFF
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise FastOpenError(
            f"FASTOPEN_TFO_BACKOFF={text!r} is not a positive number of seconds",
            hint="e.g. FASTOPEN_TFO_BACKOFF=240",
        )
    return value


def backoff(failures: int, base: float | None = None) -> float:
    """How long TFO stays off after ``failures`` failures in a row: doubling, capped at a day."""
    first = base_backoff() if base is None else base
    return float(min(MAX_BACKOFF, first * 2 ** max(0, failures - 1)))


#: ``SO_NETNS_COOKIE`` (Linux 5.14): a namespace's number, never reused until reboot (inode
#: numbers are).
SO_NETNS_COOKIE = 71


def namespace_id() -> str:
    """This thread's network namespace: its cookie, or its inode on kernels before 5.14."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            raw = probe.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError:
            return f"ino{os.stat(_NS).st_ino}"
    return str(int.from_bytes(raw, sys.byteorder))


_host: contextvars.ContextVar[str | None] = contextvars.ContextVar("path_host", default=None)


@contextlib.contextmanager
def host(namespace: str) -> Iterator[None]:
    """Use the cache of ``namespace`` (a :func:`namespace_id`) in the block, not the calling
    thread's: a userspace stack's host is the namespace it took over, wherever its loop runs."""
    token = _host.set(namespace)
    try:
        yield
    finally:
        _host.reset(token)


#: store_path's answers, by (directory, namespace): a connect looks its path up at least twice.
_paths: dict[tuple[str, str], tuple[Path, str]] = {}


def store_path() -> Path:
    """The file of this thread's network namespace (or of the :func:`host` in force)."""
    return _store()[0]


def _store() -> tuple[Path, str]:
    """:func:`store_path`, and its name as a string (for a stat without pathlib's costs)."""
    key = (os.environ.get("FASTOPEN_PATHS_DIR") or str(DIR), _host.get() or namespace_id())
    found = _paths.get(key)
    if found is None:
        path = Path(key[0]) / f"{key[1]}.json"
        found = _paths[key] = path, str(path)
    return found


def _absent(name: str) -> bool:
    """No cache file ``name``, on disk or in memory (nothing to look up: TFO goes ahead)."""
    return not os.path.exists(name) and name not in _memory


_memory: dict[str, dict[str, dict[str, Any]]] = {}


def _key(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _entry(data: dict[str, Any]) -> PathEntry:
    return PathEntry(
        address=str(data["address"]),
        port=int(data["port"]),
        failures=int(data["failures"]),
        reason=Failure(data["reason"]),
        last=float(data["last"]),
        retry_at=float(data["retry_at"]),
    )


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return dict(_memory.get(str(path), {}))
    except (OSError, ValueError):
        return {}  # a damaged cache is an empty one: TFO is tried again
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(now: float | None = None) -> Iterator[dict[str, dict[str, Any]]]:
    """The cache for a read-modify-write, under an exclusive lock (on the directory, which
    holds the files of every namespace); written back after, pruned as of ``now``."""
    path = store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        data = dict(_memory.get(str(path), {}))
        yield data
        _memory[str(path)] = data
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _load(path)
        yield data
        _prune(data, path, time.time() if now is None else now)
        if not data:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
    finally:
        os.close(lock)


def _prune(data: dict[str, dict[str, Any]], path: Path, now: float) -> None:
    """Forget the entries of ``data`` whose path has had TFO back for :data:`MAX_BACKOFF`, and
    remove the other files of ``path``'s directory that nobody wrote for twice that."""
    for key in [k for k, d in data.items() if float(d.get("retry_at", 0)) + MAX_BACKOFF < now]:
        del data[key]
    for other in path.parent.glob("*.json"):
        with contextlib.suppress(OSError):  # another host's writer may remove it first
            if other != path and other.stat().st_mtime + 2 * MAX_BACKOFF < now:
                other.unlink()


def lookup(address: str, port: int, now: float | None = None) -> PathEntry | None:
    """The entry of a path while TFO is off on it (None: go ahead with TFO)."""
    path, name = _store()
    if _absent(name):
        return None
    data = _load(path).get(_key(address, port))
    if data is None:
        return None
    entry = _entry(data)
    return entry if (time.time() if now is None else now) < entry.retry_at else None


def record(address: str, port: int, reason: Failure, now: float | None = None) -> PathEntry:
    """SYN data failed on the path: one more failure, a doubled backoff."""
    now = time.time() if now is None else now
    with _locked(now) as data:
        old = data.get(_key(address, port))
        failures = 1 + (int(old["failures"]) if old else 0)
        entry = PathEntry(address, port, failures, reason, now, now + backoff(failures))
        data[_key(address, port)] = entry.to_json()
    return entry


def clear(address: str, port: int, *, only: Failure | None = None) -> bool:
    """TFO went through on the path: forget its failures (``only`` those of one kind).
    Whether there were any."""
    path, name = _store()
    if _absent(name):
        return False
    found = _load(path).get(_key(address, port))
    if found is None or (only is not None and found.get("reason") != only.value):
        return False
    with _locked() as data:
        return data.pop(_key(address, port), None) is not None


def entries() -> list[PathEntry]:
    """Every path with failures on record (TFO off on it, or on probation after the backoff)."""
    return [_entry(d) for d in _load(store_path()).values()]


def reset(address: str | None = None, port: int | None = None) -> int:
    """Forget the failures of every path (or of ``address``, and ``port`` if given); how many."""
    with _locked() as data:
        doomed = [
            k
            for k, d in data.items()
            if (address is None or d["address"] == address) and (port is None or d["port"] == port)
        ]
        for key in doomed:
            del data[key]
    return len(doomed)


# -- the clients' hooks -----------------------------------------------------------------------
Peer = tuple[Any, ...]


def skip(peer: Peer) -> OffReason | None:
    """:attr:`OffReason.PATH_BLOCKED` while TFO is off on the path to ``peer``, else None."""
    return OffReason.PATH_BLOCKED if lookup(peer[0], peer[1]) is not None else None


def note(peer: Peer) -> str | None:
    """The report's line on why TFO is off on the path to ``peer``, or None."""
    entry = lookup(peer[0], peer[1])
    return None if entry is None else entry.note()


def reset_seen(peer: Peer) -> None:
    """A connect with TFO on was reset where a plain one to ``peer`` then went through."""
    record(str(peer[0]), int(peer[1]), Failure.RESET)


def forget_reset(peer: Peer) -> None:
    """Undo :func:`reset_seen`: the plain connect was refused too (a closed port)."""
    entry = lookup(str(peer[0]), int(peer[1]))
    if entry is not None and entry.reason is Failure.RESET:
        if entry.failures > 1:
            with _locked() as data:
                data[_key(entry.address, entry.port)]["failures"] = entry.failures - 1
        else:
            clear(entry.address, entry.port, only=Failure.RESET)


def learn(report: TfoReport, peer: Peer, *, syn_retransmitted: bool = False) -> None:
    """What a completed handshake with TFO on says about the path: SYN data lost (the SYN went
    again without it) is a failure, and so is a cookie request that needed a retransmitted SYN
    (a box drops SYNs with the option, or SYN-ACKs with it); SYN data that reached the server
    clears the path, a cookie request answered at once clears a lost option."""
    if not report.attempted:
        return
    if report.fail_reason is FailReason.SYN_RETRANSMITTED:
        record(peer[0], peer[1], Failure.LOST)
    elif report.fail_reason is FailReason.NO_COOKIE:
        if syn_retransmitted:
            record(peer[0], peer[1], Failure.OPTION_LOST)
        else:
            clear(peer[0], peer[1], only=Failure.OPTION_LOST)
    elif report.syn_data_acked or report.fail_reason is FailReason.DATA_NOT_ACKED:
        clear(peer[0], peer[1])
