"""The kernel's TFO counters: snapshots, deltas and rates, and export to Prometheus.

The exporter is a collector that reads ``/proc`` at scrape time, in the network namespace of the
thread serving the scrape (the command's, with ``--netns``), so the figures are never stale.
Counters are named after the TcpExt ones: ``fastopen_tcpext_TCPFastOpenPassive_total``...
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fastopen.errors import FastOpenError
from fastopen.kernel import counters
from fastopen.ops import enable

PREFIX = "fastopen_tcpext_"

_HELP = {
    "TCPFastOpenActive": "SYNs with data whose data the server acknowledged (client side)",
    "TCPFastOpenActiveFail": "client SYN data not acknowledged, or the SYN was retransmitted",
    "TCPFastOpenPassive": "connections accepted with a valid cookie (server side)",
    "TCPFastOpenPassiveFail": "SYNs with an invalid cookie: ordinary handshake, data dropped",
    "TCPFastOpenListenOverflow": "SYNs refused TFO because the fastopen backlog was full",
    "TCPFastOpenCookieReqd": "cookie requests answered with a cookie",
    "TCPFastOpenBlackhole": "times client TFO was disabled by blackhole detection",
    "TCPFastOpenPassiveAltKey": "cookies accepted with the backup key",
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The TFO counters at one (monotonic) time."""

    time: float
    counters: Mapping[str, int]


def snapshot() -> Snapshot:
    return Snapshot(time.monotonic(), counters.tfo_counters())


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


class TfoCollector(Collector):
    """Reads the counters and the sysctl bits at each scrape."""

    def collect(self) -> Iterable[Metric]:
        for name, value in counters.tfo_counters().items():
            family = CounterMetricFamily(PREFIX + name, _HELP.get(name, name))
            family.add_metric([], value)
            yield family
        bits = GaugeMetricFamily(
            "fastopen_sysctl_tcp_fastopen", "the net.ipv4.tcp_fastopen bitmask"
        )
        bits.add_metric([], enable.read())
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
    write_to_textfile(str(path), registry())
