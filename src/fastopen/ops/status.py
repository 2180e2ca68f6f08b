"""One look at TFO on this host (or namespace): the bits, the key, the limits, the counters, what
this kernel can do, and advice for what is off."""

from __future__ import annotations

import errno
import os
import re
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from fastopen.constants import (
    TCP_FASTOPEN_CONNECT,
    TFO_CLIENT_ENABLE,
    TFO_CLIENT_NO_COOKIE,
    TFO_SERVER_COOKIE_NOT_REQD,
    TFO_SERVER_ENABLE,
    TFO_SERVER_WO_SOCKOPT1,
)
from fastopen.errors import FastOpenError
from fastopen.kernel import sysctl
from fastopen.ops import enable, keys, stats

BLACKHOLE = enable.BLACKHOLE
SOMAXCONN = "net.core.somaxconn"


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    present: bool
    detail: str


def kernel_version(release: str) -> tuple[int, int]:
    """``(major, minor)`` of a ``uname -r`` string such as ``6.18.0-1-amd64``."""
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        return (0, 0)
    return int(match.group(1)), int(match.group(2))


def _connect_option_present() -> bool:
    """TCP_FASTOPEN_CONNECT is known (EOPNOTSUPP only says the client bit is off)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        except OSError as exc:
            return exc.errno == errno.EOPNOTSUPP
    return True


def features(release: str) -> list[Feature]:
    version = kernel_version(release)
    return [
        Feature(
            "siphash-cookies",
            version >= (5, 3),
            "cookies are SipHash-2-4 (Linux 5.3+), as fastopen computes them",
        ),
        Feature(
            "tcp-fastopen-connect",
            _connect_option_present(),
            "TCP_FASTOPEN_CONNECT: connect() then write sends the data in the SYN (Linux 4.11+)",
        ),
        Feature(
            "backup-keys",
            version >= (5, 3),
            "a backup key keeps old cookies valid across a rotation (Linux 5.3+)",
        ),
        Feature(
            "tfo-child",
            version >= (6, 16),
            "TCP_INFO tells a server a connection came from a valid cookie (Linux 6.16+)",
        ),
    ]


@dataclass(frozen=True, slots=True)
class Status:
    time: float
    netns: str
    kernel: str
    tcp_fastopen: int
    bits: list[str]
    #: None when it cannot be read (needs root).
    key_set: bool | None
    blackhole_timeout_s: int | None
    somaxconn: int
    counters: dict[str, int]
    features: list[Feature]
    advice: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _key_set() -> bool | None:
    try:
        return keys.kernel_ring() is not None
    except FastOpenError:  # not root: the key sysctl is mode 0600
        return None


def _optional_int(name: str) -> int | None:
    try:
        return sysctl.read_int(name)
    except FastOpenError:  # older kernels lack the blackhole sysctl
        return None


def advise(
    bits: int, key_set: bool | None, blackhole: int | None, found: list[Feature]
) -> list[str]:
    """What to do about what is off or risky."""
    out = []
    if not bits & TFO_CLIENT_ENABLE:
        out.append("client TFO is off: `fastopen enable --client` lets clients send data in SYNs")
    if not bits & (TFO_SERVER_ENABLE | TFO_SERVER_WO_SOCKOPT1):
        out.append("server TFO is off: `fastopen enable --server` lets listeners accept TFO")
    if bits & TFO_SERVER_COOKIE_NOT_REQD:
        out.append(
            "servers accept SYN data without a cookie: anyone can make them do work with spoofed "
            "SYNs; `fastopen disable server-no-cookie` unless every listener wants that"
        )
    if bits & TFO_CLIENT_NO_COOKIE:
        out.append(
            "clients send SYN data without a cookie to every server; "
            "`fastopen disable client-no-cookie` unless all servers run without cookies"
        )
    if key_set is False and bits & (TFO_SERVER_ENABLE | TFO_SERVER_WO_SOCKOPT1):
        out.append(
            "no TFO key is set: the kernel makes up a random one, lost at reboot and different on "
            "every server; `fastopen key generate` (one server) or `fastopen keyd` (a farm)"
        )
    if key_set is None:
        out.append("run as root to see whether a TFO key is set")
    if blackhole:
        out.append(
            f"blackhole detection is on ({blackhole} s): one lost TFO connection turns client TFO "
            "off for the whole namespace for a while"
        )
    for feature in found:
        if not feature.present:
            out.append(f"this kernel lacks {feature.name}: {feature.detail}")
    return out


def gather() -> Status:
    """The status of the current network namespace."""
    bits = enable.read()
    key_set = _key_set()
    blackhole = _optional_int(BLACKHOLE)
    release = os.uname().release
    found = features(release)
    return Status(
        time=time.time(),
        netns=stats.netns_label(),
        kernel=release,
        tcp_fastopen=bits,
        bits=enable.decode(bits),
        key_set=key_set,
        blackhole_timeout_s=blackhole,
        somaxconn=sysctl.read_int(SOMAXCONN),
        counters=stats.kernel_counters(),
        features=found,
        advice=advise(bits, key_set, blackhole, found),
    )
