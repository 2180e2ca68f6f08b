"""The TFO counters of both stacks: snapshots, deltas and rates, and export to Prometheus.

The kernel's come from ``/proc/net/netstat`` (TcpExt) of the namespace the command runs in. The
userspace stack's (the engine's counters, TcpExt names) are published by each running
``fastopen serve --stack userspace`` in a small JSON file (:class:`CounterFile`, under
``/run/fastopen/userspace/``, one per namespace and TUN device) that ``fastopen stats --stack
userspace`` and the exporter read.

Metrics follow node_exporter's netstat collector (``node_netstat_TcpExt_TCPFastOpenActive``):
``fastopen_netstat_TcpExt_<name>``, with labels ``netns`` (``host``, a name, or ``inode-N``) and
``stack`` (``kernel`` or ``userspace``, with ``tun`` for the latter). A counter the kernel lacks is
absent, not 0. The exporter reads at scrape time, so the figures are never stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric, UntypedMetricFamily
from prometheus_client.registry import Collector

from fastopen.constants import TFO_COUNTERS
from fastopen.errors import FastOpenError
from fastopen.kernel import counters
from fastopen.kernel.netns import identify
from fastopen.ops import enable
from fastopen.ops.alerts import AlertMonitor

PREFIX = "fastopen_netstat_TcpExt_"
#: The TcpExt counters fastopen reports: TFO's, and the listen queue's (both stacks count them).
EXPORTED = (*TFO_COUNTERS, "ListenOverflows", "ListenDrops")
STACKS = ("kernel", "userspace")
RUN_DIR = Path(os.environ.get("FASTOPEN_RUN_DIR", "/run/fastopen")) / "userspace"

_HELP = {
    "TCPFastOpenActive": "SYNs with data whose data the server acknowledged (client side)",
    "TCPFastOpenActiveFail": "client SYN data not acknowledged, or the SYN was retransmitted",
    "TCPFastOpenPassive": "connections accepted with a valid cookie (server side)",
    "TCPFastOpenPassiveFail": "SYNs with an invalid cookie: ordinary handshake, data dropped",
    "TCPFastOpenListenOverflow": "SYNs refused TFO because the fastopen backlog was full",
    "TCPFastOpenCookieReqd": "cookie requests answered with a cookie",
    "TCPFastOpenBlackhole": "times client TFO was disabled by blackhole detection",
    "TCPFastOpenPassiveAltKey": "cookies accepted with the backup key",
    "ListenOverflows": "SYNs or ACKs dropped because a listener's accept queue was full",
    "ListenDrops": "SYNs dropped by a listener, overflows included",
}


def netns_label() -> str:
    """The ``netns`` label of the calling thread's namespace (``unknown`` without root)."""
    try:
        return identify().label
    except FastOpenError:
        return "unknown"


def kernel_counters() -> dict[str, int]:
    """The kernel's counters of :data:`EXPORTED` that this kernel has (the others are absent)."""
    ext = counters.tcpext()
    return {name: ext[name] for name in EXPORTED if name in ext}


# -- the userspace stack's counters, published by `fastopen serve --stack userspace` -----------


@dataclass
class CounterFile:
    """The counters of one running userspace stack, for other processes to read.

    ``publish`` rewrites the file atomically (write beside it, rename); ``close`` removes it.
    """

    tun: str
    netns: str = field(default_factory=netns_label)
    path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = RUN_DIR / f"{self.netns}.{self.tun}.json"

    def publish(self, values: Mapping[str, int]) -> None:
        doc = {
            "time": time.time(),
            "pid": os.getpid(),
            "netns": self.netns,
            "tun": self.tun,
            "counters": {name: int(values.get(name, 0)) for name in EXPORTED},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(doc) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise FastOpenError(
                f"cannot publish the userspace stack's counters in {self.path}: {exc.strerror}",
                hint="run as root, or set FASTOPEN_RUN_DIR to a writable directory",
            ) from None

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # the last one leaves no empty directory behind
            self.path.parent.rmdir()


@dataclass(frozen=True, slots=True)
class Published:
    """What one userspace stack published: its device, process and counters."""

    tun: str
    pid: int
    time: float
    counters: dict[str, int]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def userspace_stacks(netns: str | None = None) -> list[Published]:
    """The userspace stacks running in namespace ``netns`` (default: the caller's)."""
    label = netns_label() if netns is None else netns
    found = []
    for path in sorted(RUN_DIR.glob(f"{label}.*.json")):
        try:
            doc = json.loads(path.read_text())
            entry = Published(
                str(doc["tun"]), int(doc["pid"]), float(doc["time"]), dict(doc["counters"])
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours
        if doc.get("netns") == label and _alive(entry.pid):
            found.append(entry)
    return found


def userspace_counters() -> dict[str, int]:
    """The counters of every userspace stack of this namespace, summed."""
    stacks = userspace_stacks()
    if not stacks:
        raise FastOpenError(
            "no userspace stack runs in this network namespace",
            hint="start one with `fastopen serve --stack userspace --address ADDR/PREFIX ...`",
        )
    total: dict[str, int] = {}
    for entry in stacks:
        for name, value in entry.counters.items():
            total[name] = total.get(name, 0) + value
    return total


# -- snapshots, deltas, rates ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counters of one stack at one time: monotonic (for rates) and Unix (for output)."""

    time: float
    wall: float
    counters: Mapping[str, int]
    stack: str = "kernel"


def snapshot(stack: str = "kernel") -> Snapshot:
    values = kernel_counters() if stack == "kernel" else userspace_counters()
    return Snapshot(time.monotonic(), time.time(), values, stack)


def snapshots() -> dict[str, Snapshot]:
    """A snapshot of each stack running here: the kernel's, and the userspace one's if any."""
    found = {"kernel": snapshot()}
    if userspace_stacks():
        with contextlib.suppress(FastOpenError):  # it stopped in between
            found["userspace"] = snapshot("userspace")
    return found


def check_alerts(
    monitor: AlertMonitor, before: Mapping[str, Snapshot], now: Mapping[str, Snapshot]
) -> None:
    """Feed the rises of every stack seen in both readings to ``monitor``."""
    for stack, snap in now.items():
        if stack in before:
            monitor.check(before[stack].counters, snap.counters, snap.wall, stack)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    value: int
    delta: int | None
    rate: float | None

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "delta": self.delta, "rate": self.rate}


def rows(now: Snapshot, before: Snapshot | None = None) -> list[Row]:
    """Each counter with its rise and rate per second since ``before`` (if given)."""
    out = []
    elapsed = now.time - before.time if before else 0.0
    for name, value in now.counters.items():
        if before is None:
            out.append(Row(name, value, None, None))
            continue
        delta = value - before.counters.get(name, 0)
        out.append(Row(name, value, delta, delta / elapsed if elapsed > 0 else None))
    return out


def sample_json(now: Snapshot, before: Snapshot | None = None) -> dict[str, object]:
    """One sample as ``stats --json`` prints it (the same shape with and without ``--watch``)."""
    return {
        "time": now.wall,
        "netns": netns_label(),
        "stack": now.stack,
        "interval_s": None if before is None else now.time - before.time,
        "counters": {r.name: r.to_json() for r in rows(now, before)},
    }


# -- Prometheus ---------------------------------------------------------------------------------


class TfoCollector(Collector):
    """Reads both stacks' counters and the sysctl bits at each scrape."""

    def collect(self) -> Iterable[Metric]:
        label = netns_label()
        series: list[tuple[dict[str, str], Mapping[str, int]]] = [
            ({"netns": label, "stack": "kernel", "tun": ""}, kernel_counters())
        ]
        for entry in userspace_stacks(label):
            series.append(
                ({"netns": label, "stack": "userspace", "tun": entry.tun}, entry.counters)
            )
        for name in EXPORTED:
            family = UntypedMetricFamily(
                PREFIX + name, f"TcpExt {name}: {_HELP[name]}", labels=["netns", "stack", "tun"]
            )
            for labels, values in series:
                if name in values:
                    family.add_metric(
                        [labels["netns"], labels["stack"], labels["tun"]], values[name]
                    )
            if family.samples:
                yield family
        bits = GaugeMetricFamily(
            "fastopen_sysctl_tcp_fastopen", "the net.ipv4.tcp_fastopen bitmask", labels=["netns"]
        )
        bits.add_metric([label], enable.read())
        yield bits


def registry() -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(TfoCollector())
    return reg


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into a host and a port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise FastOpenError(f"{text!r} is not HOST:PORT", hint="e.g. 127.0.0.1:9662 or [::1]:9662")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(host: str, port: int) -> tuple[WSGIServer, Thread]:
    """Start the Prometheus endpoint (``/metrics``) in a background thread."""
    try:
        return start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        raise FastOpenError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another address"
        ) from None


def write_textfile(path: Path) -> None:
    """Write the counters for node_exporter's textfile collector (atomically, ``*.prom``)."""
    if not path.parent.is_dir():
        raise FastOpenError(
            f"the directory {path.parent} does not exist",
            hint="point --textfile at node_exporter's --collector.textfile.directory",
        )
    try:
        write_to_textfile(str(path), registry())
    except OSError as exc:
        raise FastOpenError(
            f"cannot write {path}: {exc.strerror}", hint="check --textfile"
        ) from None
