"""Runs a packetdrill script against the stack under test: the engine, or the Linux kernel.

:class:`ScriptRunner` holds what both backends share: the run loop over the script's events,
the mapping of the script's numbers to live ones and back, the packet matcher, the checks of
system call results and times, and the ``%{ }%`` blocks. :class:`EngineRunner` runs a script
against one engine :class:`~fastopen.engine.Host` in virtual time: nothing sleeps, the runner
moves a virtual clock from event to event, firing the engine's timers on the way, so a script
that spans minutes runs in milliseconds and always the same way. The kernel backend
(:mod:`.kernel`) runs it in real time against real sockets in a network namespace.
Both follow packetdrill's conventions (``gtests/net/packetdrill``):

- one *socket under test*: the connection the script's packets belong to. ``listen()`` makes
  the next inbound SYN start a new one (with a fresh remote port); ``connect()`` or
  ``sendto(MSG_FASTOPEN)`` on a new socket starts an active one, whose port and ISN are
  learned from its first SYN;
- sequence and ack numbers are absolute in packets with SYN set and relative to the ISN of
  their side otherwise; SACK blocks likewise; outbound TS val is rebased on the first one seen,
  an inbound TS ecr is mapped back to the TS val it echoes;
- a blocking system call (no ``O_NONBLOCK``) lets the script go on while it waits, and must
  return within the tolerance of its time, or of ``start...end``;
- an outbound packet must come out within the tolerance of its time (4 ms for the engine, 25 ms
  for the kernel on a loaded machine, or 12.5% of the time since the previous event when that
  is more, as packetdrill on Linux);
  ``*`` accepts any time.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno as errno_mod
import inspect
import ipaddress
import os
import select
import socket as socket_mod
import textwrap
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from fastopen import constants as K
from fastopen.engine import EngineError, EngineSocket, Host, TcpInfo, TcpState, errqueue
from fastopen.engine.cache import IPAddress
from fastopen.engine.cc import CaState
from fastopen.engine.errqueue import (
    SCM_TSTAMP_ACK,
    SCM_TSTAMP_SCHED,
    SCM_TSTAMP_SND,
    SO_EE_ORIGIN_TIMESTAMPING,
    SO_EE_ORIGIN_ZEROCOPY,
    SOF_TIMESTAMPING_OPT_TSONLY,
    SOF_TIMESTAMPING_SOFTWARE,
)
from fastopen.engine.events import Accepted, SocketEvent
from fastopen.engine.icmp import IcmpError
from fastopen.engine.socket import (
    AF_UNSPEC_ADDRESS,
    IP_FREEBIND,
    IP_MTU_DISCOVER,
    IP_PMTUDISC_DO,
    IP_PMTUDISC_DONT,
    IP_PMTUDISC_INTERFACE,
    IP_PMTUDISC_OMIT,
    IP_PMTUDISC_PROBE,
    IP_PMTUDISC_WANT,
    IP_TOS,
    MSG_ZEROCOPY,
    SIOCATMARK,
    SIOCINQ,
    SIOCOUTQ,
    SIOCOUTQNSD,
    SO_MARK,
    SO_OOBINLINE,
    SO_TIMESTAMPING,
    SO_ZEROCOPY,
    TCP_INQ,
    TCP_NOTSENT_LOWAT,
)
from fastopen.packetdrill.errors import ScriptError, ScriptSyntaxError
from fastopen.packetdrill.packets import (
    compare,
    flags_from_text,
    icmp_type_and_code,
    segment_to_text,
    spec_to_text,
)
from fastopen.packetdrill.script import (
    ELLIPSIS,
    Action,
    Call,
    Ellipsis_,
    Event,
    Expr,
    IcmpSpec,
    KeyValue,
    ListExpr,
    Name,
    OrExpr,
    PacketSpec,
    Python,
    Quoted,
    Script,
    Shell,
    StructExpr,
    Syscall,
    TimeKind,
)
from fastopen.packetdrill.shell import (
    MODULE_PARAMS,
    SYSCTLS,
    EngineStack,
    ScriptFiles,
    ShellCommands,
)
from fastopen.wire import Flags, Sack, TcpOption, TcpSegment, Timestamps, emit_options

MASK = 0xFFFFFFFF
#: Linux's poll/epoll constants that Python's select module lacks.
POLLRDHUP = 0x2000
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
#: The members of union epoll_data a script may name.
EPOLL_DATA = ("fd", "ptr", "u32", "u64")
IP_RECVERR = 11
IPV6_RECVERR = 25
MSG_ERRQUEUE = 0x2000
MSG_TRUNC = socket_mod.MSG_TRUNC
SCM_TIMESTAMPING = SO_TIMESTAMPING
#: struct sock_extended_err of a MSG_ZEROCOPY notification (linux/errqueue.h).
SO_EE_CODE_ZEROCOPY_COPIED = 1
#: packetdrill's default addresses (local = the stack under test) and ports.
DEFAULT_ADDRESSES = {
    4: ("192.168.0.1", "192.0.2.1"),
    6: ("fd3d:a0b:17d6::1", "fd3d:fa7b:d17d::1"),
}
DEFAULT_PORT = 8080
#: Timing tolerance: packetdrill's for the engine (virtual time is exact), more for the kernel.
DEFAULT_TOLERANCE_USECS = {"engine": 4000, "kernel": 25000}
STACKS = tuple(DEFAULT_TOLERANCE_USECS)
#: packetdrill on Linux also allows 12.5% of the time since the previous event (timer wheel slack).
DEFAULT_TOLERANCE_PERCENT = 12.5
#: Remote ports the runner gives to the connections the script opens to the engine.
FIRST_REMOTE_PORT = 40000
#: How far past its expected time the runner looks for an outbound packet (virtual seconds).
MAX_WAIT = 600.0
#: A limit on the timers fired by one step of the clock, against a runaway engine.
MAX_TIMER_STEPS = 100_000

SYMBOLS: dict[str, int] = {
    "AF_INET": socket_mod.AF_INET,
    "AF_INET6": socket_mod.AF_INET6,
    "PF_INET": socket_mod.AF_INET,
    "PF_INET6": socket_mod.AF_INET6,
    "SOCK_STREAM": socket_mod.SOCK_STREAM,
    "SOCK_NONBLOCK": socket_mod.SOCK_NONBLOCK,
    "IPPROTO_TCP": socket_mod.IPPROTO_TCP,
    "SOL_TCP": socket_mod.IPPROTO_TCP,
    "SOL_SOCKET": socket_mod.SOL_SOCKET,
    "SO_REUSEADDR": socket_mod.SO_REUSEADDR,
    "SO_ERROR": socket_mod.SO_ERROR,
    "SO_SNDBUF": socket_mod.SO_SNDBUF,
    "SO_RCVBUF": socket_mod.SO_RCVBUF,
    "TCP_NODELAY": socket_mod.TCP_NODELAY,
    "TCP_CORK": socket_mod.TCP_CORK,
    "TCP_NOTSENT_LOWAT": TCP_NOTSENT_LOWAT,
    "MSG_MORE": socket_mod.MSG_MORE,
    "TCP_SYNCNT": socket_mod.TCP_SYNCNT,
    "TCP_INFO": K.TCP_INFO,
    "TCP_FASTOPEN": K.TCP_FASTOPEN,
    "TCP_FASTOPEN_CONNECT": K.TCP_FASTOPEN_CONNECT,
    "TCP_FASTOPEN_KEY": K.TCP_FASTOPEN_KEY,
    "TCP_FASTOPEN_NO_COOKIE": K.TCP_FASTOPEN_NO_COOKIE,
    "MSG_FASTOPEN": K.MSG_FASTOPEN,
    "MSG_DONTWAIT": socket_mod.MSG_DONTWAIT,
    "MSG_OOB": socket_mod.MSG_OOB,
    "MSG_PEEK": socket_mod.MSG_PEEK,
    "F_GETFL": 3,
    "F_SETFL": 4,
    "O_RDONLY": os.O_RDONLY,
    "O_RDWR": os.O_RDWR,
    "O_NONBLOCK": os.O_NONBLOCK,
    "SHUT_RD": socket_mod.SHUT_RD,
    "SHUT_WR": socket_mod.SHUT_WR,
    "SHUT_RDWR": socket_mod.SHUT_RDWR,
    "AF_UNSPEC": socket_mod.AF_UNSPEC,
    "SOL_IP": socket_mod.IPPROTO_IP,
    "IP_RECVERR": IP_RECVERR,
    "MSG_NOSIGNAL": socket_mod.MSG_NOSIGNAL,
    "SO_KEEPALIVE": socket_mod.SO_KEEPALIVE,
    "TCP_KEEPIDLE": socket_mod.TCP_KEEPIDLE,
    "TCP_KEEPINTVL": socket_mod.TCP_KEEPINTVL,
    "TCP_KEEPCNT": socket_mod.TCP_KEEPCNT,
    "TCP_MAXSEG": socket_mod.TCP_MAXSEG,
    "TCP_USER_TIMEOUT": socket_mod.TCP_USER_TIMEOUT,
    "TCP_QUICKACK": socket_mod.TCP_QUICKACK,
    "SO_ZEROCOPY": SO_ZEROCOPY,
    "SO_MARK": SO_MARK,
    "SO_OOBINLINE": SO_OOBINLINE,
    "IP_FREEBIND": IP_FREEBIND,
    "IP_TOS": IP_TOS,
    "IP_MTU_DISCOVER": IP_MTU_DISCOVER,
    "IP_PMTUDISC_DONT": IP_PMTUDISC_DONT,
    "IP_PMTUDISC_WANT": IP_PMTUDISC_WANT,
    "IP_PMTUDISC_DO": IP_PMTUDISC_DO,
    "IP_PMTUDISC_PROBE": IP_PMTUDISC_PROBE,
    "IP_PMTUDISC_INTERFACE": IP_PMTUDISC_INTERFACE,
    "IP_PMTUDISC_OMIT": IP_PMTUDISC_OMIT,
    "MSG_ZEROCOPY": MSG_ZEROCOPY,
    "MSG_EOR": socket_mod.MSG_EOR,
    "TCP_INQ": TCP_INQ,
    "TCP_CM_INQ": TCP_INQ,
    "MSG_ERRQUEUE": MSG_ERRQUEUE,
    "SOL_IPV6": socket_mod.IPPROTO_IPV6,
    "IPV6_RECVERR": IPV6_RECVERR,
    "SO_EE_ORIGIN_NONE": 0,
    "SO_EE_ORIGIN_LOCAL": 1,
    "SO_EE_ORIGIN_ICMP": 2,
    "SO_EE_ORIGIN_ICMP6": 3,
    "SO_EE_ORIGIN_ZEROCOPY": SO_EE_ORIGIN_ZEROCOPY,
    "SO_EE_ORIGIN_TIMESTAMPING": SO_EE_ORIGIN_TIMESTAMPING,
    "SO_TIMESTAMPING": SO_TIMESTAMPING,
    "SCM_TIMESTAMPING": SCM_TIMESTAMPING,
    "SCM_TSTAMP_SND": SCM_TSTAMP_SND,
    "SCM_TSTAMP_SCHED": SCM_TSTAMP_SCHED,
    "SCM_TSTAMP_ACK": SCM_TSTAMP_ACK,
    "MSG_TRUNC": MSG_TRUNC,
    **{name: getattr(errqueue, name) for name in dir(errqueue) if name.startswith("SOF_")},
    "SO_EE_CODE_ZEROCOPY_COPIED": SO_EE_CODE_ZEROCOPY_COPIED,
    "SIOCINQ": SIOCINQ,
    "SIOCATMARK": SIOCATMARK,
    "FIONREAD": SIOCINQ,
    "SIOCOUTQ": SIOCOUTQ,
    "TIOCOUTQ": SIOCOUTQ,
    "SIOCOUTQNSD": SIOCOUTQNSD,
    "TCP_CONGESTION": socket_mod.TCP_CONGESTION,
    "POLLIN": select.POLLIN,
    "POLLPRI": select.POLLPRI,
    "POLLOUT": select.POLLOUT,
    "POLLERR": select.POLLERR,
    "POLLHUP": select.POLLHUP,
    "POLLNVAL": select.POLLNVAL,
    "POLLRDNORM": select.POLLRDNORM,
    "POLLWRNORM": select.POLLWRNORM,
    "POLLRDHUP": POLLRDHUP,
    "EPOLLIN": select.EPOLLIN,
    "EPOLLPRI": select.EPOLLPRI,
    "EPOLLOUT": select.EPOLLOUT,
    "EPOLLERR": select.EPOLLERR,
    "EPOLLHUP": select.EPOLLHUP,
    "EPOLLRDNORM": select.EPOLLRDNORM,
    "EPOLLWRNORM": select.EPOLLWRNORM,
    "EPOLLRDHUP": select.EPOLLRDHUP,
    "EPOLLET": select.EPOLLET,
    "EPOLLONESHOT": select.EPOLLONESHOT,
    "EPOLLEXCLUSIVE": select.EPOLLEXCLUSIVE,
    "EPOLL_CTL_ADD": EPOLL_CTL_ADD,
    "EPOLL_CTL_DEL": EPOLL_CTL_DEL,
    "EPOLL_CTL_MOD": EPOLL_CTL_MOD,
    # errno names, as packetdrill's symbol table has them (getsockopt SO_ERROR [ECONNREFUSED])
    **{
        name: getattr(errno_mod, name)
        for name in dir(errno_mod)
        if name[:1] == "E" and name.isupper()
    },
}
#: Names a ``%{ }%`` block sees besides the tcpi_* fields: TCPI_OPT_*, Linux's TCP_* states and
#: its TCP_CA_* congestion states.
PYTHON_CONSTANTS = {name: getattr(K, name) for name in dir(K) if name.startswith("TCPI_OPT_")}
PYTHON_CONSTANTS.update(
    {
        "TCP_" + name: int(state)
        for name, state in (
            ("ESTABLISHED", TcpState.ESTABLISHED),
            ("SYN_SENT", TcpState.SYN_SENT),
            ("SYN_RECV", TcpState.SYN_RECEIVED),
            ("FIN_WAIT1", TcpState.FIN_WAIT_1),
            ("FIN_WAIT2", TcpState.FIN_WAIT_2),
            ("TIME_WAIT", TcpState.TIME_WAIT),
            ("CLOSE", TcpState.CLOSED),
            ("CLOSE_WAIT", TcpState.CLOSE_WAIT),
            ("LAST_ACK", TcpState.LAST_ACK),
            ("LISTEN", TcpState.LISTEN),
            ("CLOSING", TcpState.CLOSING),
        )
    }
)
PYTHON_CONSTANTS.update(
    {"TCP_CA_" + (s.name if s is CaState.CWR else s.name.title()): int(s) for s in CaState}
)


@dataclass(slots=True)
class Config:
    """Where and how a script runs (packetdrill's command-line flags of the same names).

    ``stack`` is the backend: ``engine`` (virtual time) or ``kernel`` (real time, root).
    ``tolerance_usecs`` None means the backend's default (:data:`DEFAULT_TOLERANCE_USECS`).
    """

    stack: str = "engine"
    ip_version: int = 4
    local_ip: IPAddress | None = None
    remote_ip: IPAddress | None = None
    bind_port: int = DEFAULT_PORT
    connect_port: int = DEFAULT_PORT
    tolerance_usecs: int | None = None
    tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT
    tcp_ts_tick_usecs: int | None = None
    #: Inbound TS ecr values with no outbound TS val of their own are interpolated.
    tcp_ts_ecr_scaled: bool = False
    #: Each outbound packet must match its script packet alone (no TSO/GSO aggregation).
    strict_segments: bool = False
    mtu: int = 1500
    #: packetdrill's ``-D NAME=VALUE`` (applied when the script is parsed).
    defines: dict[str, str] = field(default_factory=dict)
    #: Options given on the command line, by packetdrill's names: they override the script's.
    command_line: dict[str, str] = field(default_factory=dict)

    def apply(self, options: dict[str, str], path: str) -> None:
        """The script's ``--name=value`` lines."""
        for name, value in options.items():
            try:
                self._apply(name, value)
            except ValueError:
                raise ScriptSyntaxError(path, 0, f"bad value for --{name}: {value!r}") from None

    def _apply(self, name: str, value: str) -> None:
        if name == "ip_version":
            if value not in ("ipv4", "ipv6"):
                raise ValueError(value)
            self.ip_version = 4 if value == "ipv4" else 6
        elif name == "local_ip":
            self.local_ip = ipaddress.ip_address(value)
        elif name == "remote_ip":
            self.remote_ip = ipaddress.ip_address(value)
        elif name in ("bind_port", "connect_port", "tolerance_usecs", "tcp_ts_tick_usecs", "mtu"):
            setattr(self, name, int(value))
        elif name in ("tcp_ts_ecr_scaled", "strict_segments"):
            if value not in ("", "true"):
                raise ValueError(value)
            setattr(self, name, True)
        elif name == "tolerance_percent":
            self.tolerance_percent = float(value)
        elif name not in ("gateway_ip", "netmask_ip"):  # those only route packetdrill's tun device
            raise ValueError(value)

    def addresses(self) -> tuple[IPAddress, IPAddress]:
        """(local, remote): the script's, else packetdrill's defaults for the IP version."""
        version = self.ip_version
        if self.local_ip is not None:
            version = self.local_ip.version
        local, remote = DEFAULT_ADDRESSES[version]
        return (
            self.local_ip or ipaddress.ip_address(local),
            self.remote_ip or ipaddress.ip_address(remote),
        )

    @property
    def tolerance(self) -> int:
        """The timing tolerance in microseconds."""
        if self.tolerance_usecs is not None:
            return self.tolerance_usecs
        return DEFAULT_TOLERANCE_USECS[self.stack]


S = TypeVar("S")
F = TypeVar("F")


@dataclass(slots=True)
class Flow(Generic[S]):
    """The socket under test: one connection between the stack and the script's peer."""

    passive: bool
    remote_port: int
    local_port: int | None
    sock: S | None = None
    remote_isn: int | None = None
    local_isn_live: int | None = None
    local_isn_script: int = 0
    ts_first: tuple[int, int] | None = None  # (script TS val, actual TS val)
    ts_map: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a script did: counts and the time it covered (virtual for the engine)."""

    path: str
    events: int
    packets_in: int
    packets_out: int
    syscalls: int
    duration: float


class ScriptRunner(ABC, Generic[S, F]):
    """What the backends share; ``S`` is the backend's socket, ``F`` its descriptor entry."""

    def __init__(self, script: Script, config: Config) -> None:
        self.script = script
        self.config = config
        self.local, self.remote = config.addresses()
        if self.local.version != self.remote.version:
            raise ScriptSyntaxError(script.path, 0, "local and remote address families differ")
        self.last_time = 0.0
        self.fds: dict[int, F] = {}
        #: The files the script's commands made, for open() and sendfile().
        self.files = ScriptFiles()
        self.flow: Flow[S] | None = None
        self.next_remote_port = FIRST_REMOTE_PORT
        self.event: Event | None = None
        self.call: Syscall | None = None
        self.counts = {"in": 0, "out": 0, "syscalls": 0}
        #: The ``%{ }%`` blocks' globals: packetdrill runs them all as one Python program
        #: (code.c), so a name one block sets is there in the next.
        self.python_vars: dict[str, object] = {"__builtins__": builtins, **PYTHON_CONSTANTS}
        self.icmp: dict[int, tuple[int, int]] = {}
        for event in script.events:  # packetdrill resolves ICMP names when it parses
            if isinstance(event.action, IcmpSpec):
                try:
                    self.icmp[event.line] = icmp_type_and_code(self.local.version, event.action)
                except ValueError as exc:
                    raise ScriptSyntaxError(script.path, event.line, str(exc)) from None

    # -- what each backend provides ----------------------------------------------------------------

    @abstractmethod
    def clock(self) -> float:
        """Seconds since the script started."""

    @abstractmethod
    def wait_until(self, when: float) -> None:
        """Let the stack run until script time ``when``."""

    @abstractmethod
    def next_packet(self, start: float, end: float | None) -> tuple[float, TcpSegment] | None:
        """The next segment of the socket under test, with its time; None if none came."""

    @abstractmethod
    def send_segment(self, seg: TcpSegment) -> None:
        """Deliver an inbound segment (remote to local) to the stack."""

    @abstractmethod
    def send_icmp(self, error: IcmpError) -> None:
        """Deliver an inbound ICMP error about the socket under test to the stack."""

    @abstractmethod
    def shell(self, command: str) -> str | None:
        """Run a backtick block; the first command that failed, or None."""

    @abstractmethod
    def syscall(self, event: Event, call: Syscall) -> None:
        """Perform a system call event (a blocking one may finish later)."""

    @abstractmethod
    def finish_pending(self) -> None:
        """Wait for a blocked system call to return, and check it."""

    @abstractmethod
    def tcp_info_fields(self) -> dict[str, int]:
        """The ``tcpi_*`` fields of the socket under test, for ``%{ }%``."""

    # -- errors ------------------------------------------------------------------------------------

    def fail(
        self, message: str, event: Event | None = None, hint: str | None = None
    ) -> ScriptError:
        ev = event or self.event
        return ScriptError(self.script.path, ev.line if ev else 0, message, hint=hint)

    # -- time --------------------------------------------------------------------------------------

    def tolerance(self, start: float, since: float) -> float:
        """packetdrill's timing slack for an event at ``start`` whose previous event was at
        ``since``: ``tolerance_usecs``, or ``tolerance_percent`` of the gap when that is more."""
        gap = max(start - since, 0.0)
        return max(self.config.tolerance / 1e6, self.config.tolerance_percent / 100 * gap)

    def event_window(self, event: Event) -> tuple[float, float | None]:
        """(script time of the event, the end of its range or None)."""
        t = event.time
        if t.kind is TimeKind.ANY:
            return self.clock(), None
        start = t.start + (self.last_time if t.kind is TimeKind.RELATIVE else 0.0)
        if t.end is None:
            return start, start
        return start, t.end + (start if t.end_relative else 0.0)

    # -- the run -----------------------------------------------------------------------------------

    def run(self) -> RunResult:
        for event in self.script.events:
            self.event = event
            start, end = self.event_window(event)
            action = event.action
            if isinstance(action, PacketSpec) and action.direction == ">":
                self.expect_packet(event, action, start, end)
            else:
                if isinstance(action, Syscall):
                    self.finish_pending()
                if event.time.kind is not TimeKind.ANY:
                    self.wait_until(start)
                self.perform(event, action)
                self.last_time = self.clock() if event.time.kind is TimeKind.ANY else start
        self.finish_pending()
        return RunResult(
            self.script.path,
            len(self.script.events),
            self.counts["in"],
            self.counts["out"],
            self.counts["syscalls"],
            self.clock(),
        )

    def perform(self, event: Event, action: Action) -> None:
        if isinstance(action, PacketSpec):
            self.inject(action)
        elif isinstance(action, IcmpSpec):
            self.inject_icmp(event, action)
        elif isinstance(action, Syscall):
            self.counts["syscalls"] += 1
            self.syscall(event, action)
        elif isinstance(action, Shell):
            failed = self.shell(action.command)
            if failed is not None:
                raise self.fail(
                    f"shell command failed or unsupported: {failed!r}", hint=self.shell_hint()
                )
        else:
            self.python(action)

    def shell_hint(self) -> str:
        known = ", ".join(name.rsplit(".", 1)[1] for name in SYSCTLS)
        params = ", ".join(f"{module}.{name}" for module, name in MODULE_PARAMS)
        return (
            f"the runner knows the sysctls {known}, the module parameters {params} ('echo N "
            "> /sys/module/MODULE/parameters/NAME'), defaults.sh, set_sysctls.py, "
            "'ip tcp_metrics flush', 'ip route add|change|replace PREFIX dev DEV "
            "[features tcp_usec_ts]', 'ethtool -K tun0 tso|gso on|off', 'tc qdisc "
            "add|replace dev tun0 root fq|pfifo_fast', 'tc qdisc delete dev tun0 root', "
            "'rm -f /tmp/NAME' and 'dd bs=N count=M if=/dev/zero of=/tmp/NAME'"
        )

    # -- inbound packets ---------------------------------------------------------------------------

    def inject(self, spec: PacketSpec) -> None:
        flags = flags_from_text(spec.flags)
        syn = bool(flags & Flags.SYN)
        if spec.window is None:
            raise self.fail("an inbound packet needs a window ('win N')")
        flow = self.flow
        if syn and not flags & Flags.ACK and flow is None:
            flow = self.flow = Flow(True, self.next_remote_port, self.config.bind_port)
            self.next_remote_port += 1
        if flow is None:
            raise self.fail("an inbound packet, but no socket is listening or connecting")
        if flow.local_port is None:
            raise self.fail("an inbound packet before the stack's SYN")
        if syn:
            flow.remote_isn = spec.seq
        remote_isn = flow.remote_isn or 0
        seq = spec.seq if syn else spec.seq + remote_isn
        local_live = flow.local_isn_live or 0
        ack_offset = local_live - flow.local_isn_script if syn else local_live
        ack = (spec.ack or 0) + ack_offset if flags & Flags.ACK else 0
        assert spec.options is not None
        options = tuple(self.inbound_option(flow, o, ack_offset, flags) for o in spec.options)
        try:
            seg = TcpSegment(
                self.config.connect_port if not flow.passive else flow.remote_port,
                flow.local_port,
                seq & MASK,
                ack & MASK,
                flags,
                spec.window,
                options,
                bytes(spec.length),
                spec.urgent,
                ecn=spec.ecn or 0,  # no [ECN]: Not-ECT, as packetdrill sends it
            )
        except ValueError as exc:
            raise self.fail(f"cannot build the inbound packet: {exc}") from None
        self.counts["in"] += 1
        self.send_segment(seg)

    def inject_icmp(self, event: Event, spec: IcmpSpec) -> None:
        """An ICMP error quoting a segment of the socket under test, its sequence number in
        script space (relative to the stack's ISN), as packetdrill's
        ``map_inbound_icmp_tcp_packet``."""
        flow = self.flow
        if flow is None or flow.local_port is None:
            raise self.fail("an inbound ICMP packet, but there is no socket under test")
        type_, code = self.icmp[event.line]
        remote_port = flow.remote_port if flow.passive else self.config.connect_port
        seq = (spec.seq + (flow.local_isn_live or 0)) & MASK
        error = IcmpError(
            self.local.version,
            type_,
            code,
            self.local,
            self.remote,
            flow.local_port,
            remote_port,
            seq,
            spec.mtu or 0,
        )
        self.counts["in"] += 1
        self.send_icmp(error)

    def inbound_option(
        self, flow: Flow[S], opt: TcpOption, ack_offset: int, flags: Flags
    ) -> TcpOption:
        if isinstance(opt, Sack):
            return Sack(
                tuple(((a + ack_offset) & MASK, (b + ack_offset) & MASK) for a, b in opt.blocks)
            )
        if isinstance(opt, Timestamps) and flags & Flags.ACK:
            live = flow.ts_map.get(opt.tsecr)
            if live is None and flow.ts_first is not None and self.config.tcp_ts_ecr_scaled:
                live = opt.tsecr - flow.ts_first[0] + flow.ts_first[1]
            if live is None:
                raise self.fail(
                    f"unable to infer live TS ecr for script TS ecr {opt.tsecr}; "
                    "no matching or preceding outbound TS val"
                )
            return Timestamps(opt.tsval, live & MASK)
        return opt

    # -- outbound packets --------------------------------------------------------------------------

    def belongs(self, src: IPAddress, dst: IPAddress, seg: TcpSegment) -> bool:
        flow = self.flow
        if flow is None or dst != self.remote:
            return False
        if flow.passive:
            return seg.src_port == flow.local_port and seg.dst_port == flow.remote_port
        if seg.dst_port != self.config.connect_port:
            return False
        if flow.local_port is None:
            return bool(seg.flags & Flags.SYN) and not seg.flags & Flags.ACK
        return seg.src_port == flow.local_port

    def expect_packet(
        self, event: Event, spec: PacketSpec, start: float, end: float | None
    ) -> None:
        found = self.next_packet(start, end)
        if found is None:
            raise self.fail(
                "error handling packet: expected outbound packet was not sent\n"
                f"script packet: {start:9.6f} {spec_to_text(spec)}"
            )
        when, seg = self.aggregate(found, spec, start, end)
        self.counts["out"] += 1
        flow = self.flow
        assert flow is not None
        actual = self.to_script_space(flow, seg, spec)
        expected_text = f"script packet: {start:9.6f} {spec_to_text(spec)}"
        actual_text = f"actual packet: {when:9.6f} {segment_to_text(actual)}"
        tick = self.config.tcp_ts_tick_usecs
        ts_tolerance = None if not tick else self.config.tolerance // tick
        problem = compare(spec, actual, ts_tolerance_ticks=ts_tolerance)
        tol = self.tolerance(start, self.last_time)
        late = end is not None and not start - tol <= when <= end + tol
        if problem is None and late:
            wanted = f"{start:.6f}" if end == start else f"{start:.6f}~{end:.6f}"
            problem = (
                f"timing error: expected outbound packet at {wanted} sec "
                f"but happened at {when:.6f} sec; tolerance {round(tol * 1e6)} usecs"
            )
        if problem is not None:
            raise self.fail(f"error handling packet: {problem}\n{expected_text}\n{actual_text}")
        # after a packet matched in a range of times (or at any time), the next relative time
        # counts from when it came, as packetdrill adjusts relative event times; after one at
        # an exact time, from that time (the kernel backend's own read latency must not pile
        # up into the timeline, and the TSvals the kernel sends stay on the script's clock)
        self.last_time = when if end != start else start

    def aggregate(
        self, first: tuple[float, TcpSegment], spec: PacketSpec, start: float, end: float | None
    ) -> tuple[float, TcpSegment]:
        """The packets that together carry the payload ``spec`` expects, as one (packetdrill's
        TSO/GSO aggregation, off with ``--strict_segments``).

        As packetdrill's ``do_outbound_script_packet``: packets are taken while the payload is
        short of the script's; each must continue the previous one (the next sequence number,
        the same SYN, RST, ACK, URG and ECE bits, ack, window and option length) and all but the
        last must be the size of the previous one. The result has the last packet's header and
        time, with the first one's sequence number and CWR bit.
        """
        when, seg = first
        if self.config.strict_segments:
            return first
        same = Flags.SYN | Flags.RST | Flags.ACK | Flags.URG | Flags.ECE
        pieces = [seg]
        total = len(seg.payload)
        while total < spec.length:
            found = self.next_packet(start, end)
            if found is None:
                break
            when, seg = found
            previous = pieces[-1]
            last = len(seg.payload) >= spec.length - total
            problem = None
            if seg.seq != (previous.seq + len(previous.payload)) & MASK:
                problem = "tcp_seq"
            elif seg.flags & same != previous.flags & same:
                problem = "tcp flags"
            elif seg.ack != previous.ack or seg.window != previous.window:
                problem = "tcp_ack_seq" if seg.ack != previous.ack else "tcp_window"
            elif header_words(seg) != header_words(previous):
                problem = "tcp_data_offset"
            elif not last and len(seg.payload) != len(previous.payload):
                problem = (
                    f"fragment payload: expected {len(previous.payload)} bytes vs actual "
                    f"{len(seg.payload)} bytes"
                )
            if problem is not None:
                raise self.fail(
                    f"error handling packet: aggregate candidate: {problem} differs\n"
                    f"script packet: {start:9.6f} {spec_to_text(spec)}\n"
                    f"actual packet: {when:9.6f} {segment_to_text(seg)} (live)"
                )
            pieces.append(seg)
            total += len(seg.payload)
        if len(pieces) == 1:
            return when, seg
        flags = (seg.flags & ~Flags.CWR) | (pieces[0].flags & Flags.CWR)
        payload = b"".join(piece.payload for piece in pieces)
        return when, dataclasses.replace(seg, seq=pieces[0].seq, flags=flags, payload=payload)

    def to_script_space(self, flow: Flow[S], seg: TcpSegment, spec: PacketSpec) -> TcpSegment:
        syn = bool(seg.flags & Flags.SYN)
        if syn:
            flow.local_isn_live = seg.seq
            flow.local_isn_script = spec.seq
            if not flow.passive:
                flow.local_port = seg.src_port
        live_isn = flow.local_isn_live or 0
        seq_offset = live_isn - flow.local_isn_script if syn else live_isn
        ack_offset = 0 if syn else flow.remote_isn or 0
        options: list[TcpOption] = []
        for opt in seg.options:
            if isinstance(opt, Sack):
                opt = Sack(
                    tuple(((a - ack_offset) & MASK, (b - ack_offset) & MASK) for a, b in opt.blocks)
                )
            elif isinstance(opt, Timestamps):
                opt = self.rebase_tsval(flow, opt, spec)
            options.append(opt)
        return dataclasses.replace(
            seg,
            seq=(seg.seq - seq_offset) & MASK,
            ack=(seg.ack - ack_offset) & MASK,
            options=tuple(options),
        )

    def rebase_tsval(self, flow: Flow[S], actual: Timestamps, spec: PacketSpec) -> Timestamps:
        script_ts = next((o for o in spec.options or () if isinstance(o, Timestamps)), None)
        if script_ts is None:
            return actual
        flow.ts_map[script_ts.tsval] = actual.tsval
        if flow.ts_first is None:
            flow.ts_first = (script_ts.tsval, actual.tsval)
        first_script, first_actual = flow.ts_first
        return Timestamps((first_script + actual.tsval - first_actual) & MASK, actual.tsecr)

    # -- system calls ------------------------------------------------------------------------------

    def value(self, expr: Expr) -> int | None:
        """An integer argument (``[1]`` is 1; ``...`` is None)."""
        if isinstance(expr, Ellipsis_):
            return None
        if isinstance(expr, int):
            return expr
        if isinstance(expr, Name):
            v6 = self.local.version == 6
            if expr.name in ("CMSG_LEVEL_IP", "CMSG_TYPE_RECVERR"):  # packetdrill's, by family
                if expr.name == "CMSG_LEVEL_IP":
                    return socket_mod.IPPROTO_IPV6 if v6 else socket_mod.IPPROTO_IP
                return IPV6_RECVERR if v6 else IP_RECVERR
            known = SYMBOLS.get(expr.name, PYTHON_CONSTANTS.get(expr.name))
            if known is None:
                raise self.fail(f"unknown symbol {expr.name}")
            return known
        if isinstance(expr, OrExpr):
            total = 0
            for item in expr.items:
                total |= self.value(item) or 0
            return total
        if isinstance(expr, ListExpr) and len(expr.items) == 1:
            return self.value(expr.items[0])
        raise self.fail(f"expected a number, found {expr!r}")

    def new_fd(self, entry: F, want: int | Ellipsis_) -> int:
        """A descriptor for ``sock``: ``want`` (the number the script expects), else the lowest
        free one from 3.

        packetdrill maps script descriptors to live ones, so a script may give a new socket a
        number still in use: the old socket stays open, out of the script's reach.
        """
        number = want if isinstance(want, int) and want >= 0 else 3
        if number != want:
            while number in self.fds:
                number += 1
        self.fds[number] = entry
        return number

    def expected_result(self) -> int | Ellipsis_:
        assert self.call is not None
        return self.call.result

    def handler(self, call: Syscall) -> Callable[..., Any]:
        """The ``sys_NAME`` method for ``call``, its arguments checked; the call becomes current."""
        handler: Callable[..., Any] | None = getattr(self, f"sys_{call.name}", None)
        if handler is None:
            raise self.fail(f"unsupported system call {call.name}()")
        try:
            inspect.signature(handler).bind(*call.args)
        except TypeError:
            raise self.fail(f"wrong number of arguments to {call.name}()") from None
        self.call = call
        return handler

    def iov_lengths(self, msg: Expr) -> list[int]:
        """The buffer lengths in ``msg_iov(N)=[{..., LEN}, ...]`` of a struct msghdr."""
        if not isinstance(msg, StructExpr):
            raise self.fail("sendmsg needs a struct msghdr")
        for item in msg.items:
            if not isinstance(item, KeyValue):
                continue
            key = item.key
            name = key.name if isinstance(key, (Name, Call)) else ""
            if name == "msg_iov" and isinstance(item.value, ListExpr):
                return [
                    self.value(iov.items[-1]) or 0
                    for iov in item.value.items
                    if isinstance(iov, StructExpr) and iov.items
                ]
        raise self.fail("sendmsg: no msg_iov in the struct msghdr")

    def check_msghdr(
        self, msg: Expr, flags: int, cmsgs: Sequence[tuple[int, int, dict[str, int] | int]]
    ) -> None:
        """What recvmsg wrote into the script's struct msghdr: ``msg_flags`` and each
        ``{cmsg_level=, cmsg_type=, cmsg_data={name=value, ...}}`` of ``msg_control``."""
        if not isinstance(msg, StructExpr):
            raise self.fail("recvmsg needs a struct msghdr")
        for item in msg.items:
            if not isinstance(item, KeyValue) or not isinstance(item.key, Name):
                continue
            if item.key.name == "msg_flags":
                want = self.value(item.value)
                if want is not None and want != flags:
                    raise self.fail(f"recvmsg: expected msg_flags 0x{want:x} but got 0x{flags:x}")
            elif item.key.name == "msg_control" and isinstance(item.value, ListExpr):
                wanted = item.value.items
                if len(wanted) != len(cmsgs):
                    raise self.fail(f"recvmsg: expected {len(wanted)} cmsgs but got {len(cmsgs)}")
                for cmsg, (level, kind, data) in zip(wanted, cmsgs, strict=True):
                    self.check_cmsg(cmsg, level, kind, data)

    def check_cmsg(self, cmsg: Expr, level: int, kind: int, data: dict[str, int] | int) -> None:
        """One ``{cmsg_level=, cmsg_type=, cmsg_data={...}}`` against the cmsg recvmsg wrote."""
        if not isinstance(cmsg, StructExpr):
            raise self.fail("expected a struct cmsghdr")
        members = {
            item.key.name: item.value
            for item in cmsg.items
            if isinstance(item, KeyValue) and isinstance(item.key, Name)
        }
        want = (
            self.value(members.get("cmsg_level", ELLIPSIS)),
            self.value(members.get("cmsg_type", ELLIPSIS)),
        )
        if want != (level, kind):
            raise self.fail(
                f"recvmsg: expected cmsg level {want[0]} type {want[1]} "
                f"but got level {level} type {kind}"
            )
        body = members.get("cmsg_data")
        if body is None:
            return
        if (level, kind) == (socket_mod.SOL_SOCKET, SCM_TIMESTAMPING) and isinstance(data, dict):
            self.check_timestamp(body, data)
            return
        if isinstance(data, int):  # an int payload (TCP_CM_INQ)
            want_int = self.value(body)
            if want_int is not None and want_int != data:
                raise self.fail(f"recvmsg: cmsg_data: expected {want_int} but got {data}")
            return
        names = tuple(
            item.key.name
            for item in getattr(body, "items", ())
            if isinstance(item, KeyValue) and isinstance(item.key, Name)
        )
        for name, value in self.struct_fields(body, names, "cmsg_data").items():
            if name not in data:
                raise self.fail(f"recvmsg: cmsg_data has no {name}")
            if data[name] != value:
                raise self.fail(f"recvmsg: cmsg_data {name}: expected {value} but got {data[name]}")

    def check_timestamp(self, body: Expr, data: dict[str, int]) -> None:
        """An SCM_TIMESTAMPING cmsg's first timestamp, in script time, within the tolerance
        of the script's (packetdrill's scm_timestamping_expect_eq; zero: not checked)."""
        want = self.struct_fields(body, ("scm_sec", "scm_nsec"), "cmsg_data")
        expected = want.get("scm_sec", 0) * 1_000_000 + want.get("scm_nsec", 0) // 1000
        if not expected:
            return
        actual = data["scm_sec"] * 1_000_000 + data["scm_nsec"] // 1000
        if abs(expected - actual) > self.config.tolerance:
            raise self.fail(
                f"Bad timestamp 0 in scm_timestamping: expected={expected} actual={actual}"
            )

    def poll_args(
        self, fds: Expr, nfds: Expr, timeout: Expr
    ) -> tuple[list[tuple[int, int, int]], int]:
        """poll's (fd, events, expected revents) entries and its timeout in ms (-1: none)."""
        if not isinstance(fds, ListExpr):
            raise self.fail("poll needs a list of struct pollfd")
        entries: list[tuple[int, int, int]] = []
        for item in fds.items:
            fields = self.struct_fields(item, ("fd", "events", "revents"), "struct pollfd")
            entries.append((fields["fd"], fields["events"], fields["revents"]))
        if self.value(nfds) != len(entries):
            raise self.fail("poll: nfds differs from the number of struct pollfd")
        ms = self.value(timeout)
        return entries, -1 if ms is None else ms

    def check_revents(
        self, entries: list[tuple[int, int, int]], got: list[int], event: Event | None
    ) -> None:
        """Each struct pollfd's revents must be the script's (packetdrill's pollfds_check)."""
        for (number, _, want), actual in zip(entries, got, strict=True):
            if want != actual:
                raise self.fail(
                    f"poll: fd {number}: expected revents {poll_text(want)} "
                    f"but got {poll_text(actual)}",
                    event,
                )

    def check_ioctl(self, arg: Expr, actual: int) -> None:
        """The value an ioctl wrote into its ``[N]`` argument (packetdrill's syscall_ioctl)."""
        if isinstance(arg, ListExpr):
            expected = self.value(arg)
            if expected is not None and expected != actual:
                raise self.fail(f"Bad ioctl optval: expected: {expected} actual: {actual}")

    def struct_fields(self, expr: Expr, names: tuple[str, ...], what: str) -> dict[str, int]:
        """``{a=1, b=X|Y}`` as numbers; every name of ``names`` must be there."""
        if not isinstance(expr, StructExpr):
            raise self.fail(f"expected a {what}")
        fields: dict[str, int] = {}
        for item in expr.items:
            if isinstance(item, KeyValue) and isinstance(item.key, Name):
                value = self.value(item.value)
                if value is not None:
                    fields[item.key.name] = value
        missing = [name for name in names if name not in fields]
        if missing:
            raise self.fail(f"{what}: no {', '.join(missing)}")
        return fields

    def check_result(self, event: Event, call: Syscall, result: int, err: int | None) -> None:
        if isinstance(call.result, Ellipsis_):
            return
        ok = call.result == result
        if ok and err is not None and call.errno is not None:
            ok = getattr(errno_mod, call.errno, None) == err  # EOPNOTSUPP is ENOTSUP...
        if ok:
            return
        expected = f"{call.result}" + (f" {call.errno}" if call.errno else "")
        actual = f"{result}"
        if err is not None:
            actual += f" {errno_mod.errorcode.get(err, err)} ({os.strerror(err)})"
        raise self.fail(
            f"runtime error in {call.name} call: expected result {expected} but got {actual}", event
        )

    def check_return_time(self, event: Event, start: float, since: float, at: float) -> None:
        """A blocking call made at ``start`` (previous event at ``since``) returned at ``at``."""
        if event.time.kind is TimeKind.ANY:
            return
        end = start
        if event.time.end is not None:
            end = event.time.end + (start if event.time.end_relative else 0.0)
        tol = self.tolerance(end, since)  # the percentage covers the time waited
        if not start - tol <= at <= end + tol:
            wanted = f"{start:.6f}" if end == start else f"{start:.6f}~{end:.6f}"
            raise self.fail(
                f"timing error: expected system call return at {wanted} sec "
                f"but happened at {at:.6f} sec; tolerance {round(tol * 1e6)} usecs",
                event,
            )

    def check_tcp_info(self, info: dict[str, int], fields: StructExpr) -> None:
        """``{tcpi_state=TCP_ESTABLISHED, tcpi_options=..., ...}``: each named field must match
        (a field given as ``...`` is not checked)."""
        for item in fields.items:
            if not isinstance(item, KeyValue):
                continue
            expected = self.value(item.value)
            if expected is None:
                continue
            if not isinstance(item.key, Name) or item.key.name not in info:
                raise self.fail(
                    f"getsockopt TCP_INFO: no field {item.key!r} in the stack's tcp_info",
                    hint="known fields: " + ", ".join(sorted(info)),
                )
            got = info[item.key.name]
            if expected != got:
                raise self.fail(
                    f"getsockopt TCP_INFO: {item.key.name} expected {expected} but got {got}"
                )

    # -- %{ }% -------------------------------------------------------------------------------------

    def python(self, block: Python) -> None:
        info = self.tcp_info_fields()
        namespace = self.python_vars
        namespace.update(info)
        code = textwrap.dedent(block.code).strip()
        try:
            # followed by a blank line, as packetdrill writes it (code.c write_text): a block
            # may end in a backslash
            exec(compile(code + "\n\n", self.script.path, "exec"), namespace)
        except AssertionError as exc:
            detail = f": {exc}" if str(exc) else ""
            raise self.fail(f"assertion failed: {code}{detail}") from None
        except NameError as exc:
            raise self.fail(
                f"error in Python code: {exc}",
                hint="the stack's tcp_info has the fields " + ", ".join(sorted(info)),
            ) from None
        except Exception as exc:  # the script's own code: report any failure as a script error
            raise self.fail(f"error in Python code: {type(exc).__name__}: {exc}") from None


@dataclass(slots=True)
class Interest:
    """One descriptor an epoll instance watches: its events (with EPOLLET...), the data it
    reports (the script's ``fd=``), and whether the socket woke it since it last reported
    (Linux ep_poll_callback: an edge-triggered descriptor is reported once per wakeup)."""

    events: int
    data: int
    woken: bool = True


@dataclass(slots=True)
class Fd:
    sock: EngineSocket
    nonblocking: bool = False


@dataclass(slots=True)
class File:
    """A descriptor of one of the script's files (open()), read from ``offset``."""

    data: bytes
    offset: int = 0


@dataclass(slots=True)
class Epoll:
    """An epoll descriptor: what it watches, by descriptor number."""

    interest: dict[int, Interest] = field(default_factory=dict)


#: A pipe's capacity (Linux: 16 pages).
PIPE_CAPACITY = 65536


@dataclass(slots=True)
class Pipe:
    """One end of a pipe() (the bytes in it shared by both ends): what splice() fills."""

    data: bytearray
    write_end: bool


#: epoll's flags that are not events (Linux EP_PRIVATE_BITS).
EPOLL_FLAGS = select.EPOLLET | select.EPOLLONESHOT | select.EPOLLEXCLUSIVE


def buffers_after(lengths: Sequence[int], done: int) -> list[int]:
    """The lengths of what buffers of ``lengths`` hold past their first ``done`` bytes."""
    rest = []
    for n in lengths:
        if done >= n:
            done -= n
        else:
            rest.append(n - done)
            done = 0
    return rest


def is_null(buf: Expr) -> bool:
    """A system call's buffer given as ``NULL`` (the kernel cannot copy from or into it)."""
    return isinstance(buf, Name) and buf.name == "NULL"


def poll_text(mask: int) -> str:
    """A poll mask as packetdrill prints it (POLLIN|POLLOUT)."""
    names = [n for n, bit in SYMBOLS.items() if n.startswith("POLL") and bit & mask == bit]
    return "|".join(names) or "0"


@dataclass(slots=True)
class Pending:
    """A blocking system call in progress: ``attempt`` returns its result once it is done."""

    event: Event
    start: float
    since: float  # the script time of the event before it (for the tolerance)
    attempt: Callable[[], int | None]
    #: When the call gives up waiting (poll's timeout), if it does.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Waiting:
    """A call that waits, blocking socket or not (poll, epoll_wait): ``attempt`` returns its
    result once it has one, and must give one at ``deadline`` (None: it may wait forever)."""

    attempt: Callable[[], int | None]
    deadline: float | None


def header_words(seg: TcpSegment) -> int:
    """The TCP data offset of ``seg`` (32-bit words of header and padded options)."""
    return 5 + (len(emit_options(seg.options)) + 3) // 4


def info_fields(info: TcpInfo) -> dict[str, int]:
    """The engine's tcp_info as ``tcpi_*`` names and values."""
    return {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}


class EngineRunner(ScriptRunner[EngineSocket, Fd | Epoll | Pipe | File]):
    """One run of one script against a fresh engine Host, in virtual time."""

    def __init__(self, script: Script, config: Config) -> None:
        super().__init__(script, config)
        self.host = Host(
            [self.local],
            tcp_fastopen=K.TFO_CLIENT_ENABLE,
            mtu=config.mtu,
            negative_cache_time=0,
            tso=True,  # packetdrill's tun device takes TSO packets (TUNSETOFFLOAD)
            tsoffset=lambda local, remote: 0,
        )
        self.now = 0.0
        self.outbound: deque[tuple[float, IPAddress, IPAddress, TcpSegment]] = deque()
        self.pending: Pending | None = None

    # -- virtual time ------------------------------------------------------------------------------

    def clock(self) -> float:
        return self.now

    def wait_until(self, when: float) -> None:
        self.advance(when)

    def next_due(self) -> float | None:
        """The next engine timer, or the timeout of a blocked call if that comes first."""
        due = self.host.get_timer()
        pending = self.pending
        wake = pending.deadline if pending is not None else None
        if wake is not None and (due is None or wake < due):
            return wake
        return due

    def advance(self, until: float) -> None:
        """Fire every engine timer (and blocked call timeout) due up to ``until``, then set the
        clock there."""
        steps = 0
        while True:
            due = self.next_due()
            if due is None or due > until:
                break
            self.now = max(self.now, due)
            self.host.handle_timer(self.now)
            self.collect()
            steps += 1
            if steps > MAX_TIMER_STEPS:
                raise self.fail(f"the engine's timers do not advance at {self.now:.6f} sec")
        self.now = max(self.now, until)

    def step(self) -> bool:
        """Fire the next engine timer, whenever it is; False when there is none."""
        due = self.next_due()
        if due is None:
            return False
        self.advance(due)
        return True

    def collect(self) -> None:
        """Take the engine's output (stamped with the clock) and events; retry a blocked call,
        and take what it sent."""
        self.take_output()
        if self.pending is not None:
            self.retry_pending()
            self.take_output()

    def take_output(self) -> None:
        for src, dst, seg in self.host.segments_to_send():
            self.outbound.append((self.now, src, dst, seg))
        while (event := self.host.next_event()) is not None:
            if isinstance(event, SocketEvent):
                self.wake(event.sock)
            elif isinstance(event, Accepted):
                self.wake(event.listener)
        for entry in list(self.fds.values()):
            if isinstance(entry, Fd) and entry.sock.zerocopy_update():
                self.wake(entry.sock)  # a MSG_ZEROCOPY notification: sk_error_report

    def wake(self, sock: EngineSocket) -> None:
        """A wakeup of ``sock`` (new data, room to write, a connection to accept, an error)
        reaches every epoll instance that watches it."""
        for entry in self.fds.values():
            if isinstance(entry, Epoll):
                for number, interest in entry.interest.items():
                    watched = self.fds.get(number)
                    if isinstance(watched, Fd) and watched.sock is sock:
                        interest.woken = True

    def perform(self, event: Event, action: Action) -> None:
        super().perform(event, action)
        self.collect()

    def shell(self, command: str) -> str | None:
        return ShellCommands(EngineStack(self.host), self.files).run(command)

    # -- packets -----------------------------------------------------------------------------------

    def send_segment(self, seg: TcpSegment) -> None:
        self.host.receive_segment(self.remote, self.local, seg, self.now)

    def send_icmp(self, error: IcmpError) -> None:
        self.host.receive_icmp(error, self.now)

    def next_outbound(self) -> tuple[float, TcpSegment] | None:
        while self.outbound:
            when, src, dst, seg = self.outbound.popleft()
            if self.belongs(src, dst, seg):
                return when, seg
        return None

    def next_packet(self, start: float, end: float | None) -> tuple[float, TcpSegment] | None:
        found = self.next_outbound()
        while found is None:
            # Look past the expected time too, so that a late packet is reported as late.
            if self.now > start + MAX_WAIT or not self.step():
                return None
            found = self.next_outbound()
        return found

    # -- system calls ------------------------------------------------------------------------------

    def fd(self, expr: Expr) -> Fd:
        number = self.value(expr)
        if number is None or number not in self.fds:
            raise EngineError(errno_mod.EBADF)
        entry = self.fds[number]
        if not isinstance(entry, Fd):
            raise EngineError(errno_mod.ENOTSOCK)
        return entry

    def syscall(self, event: Event, call: Syscall) -> None:
        handler = self.handler(call)
        try:
            outcome = handler(*call.args)
        except EngineError as exc:
            self.check_result(event, call, -1, exc.errno)
            return
        if isinstance(outcome, Waiting):
            self.pending = Pending(event, self.now, self.last_time, outcome.attempt)
            self.pending.deadline = outcome.deadline
            self.retry_pending()
            return
        if callable(outcome):
            self.pending = Pending(event, self.now, self.last_time, outcome)
            self.retry_pending()
            return
        self.check_result(event, call, outcome, None)

    def retry_pending(self) -> None:
        pending = self.pending
        assert pending is not None
        call = pending.event.action
        assert isinstance(call, Syscall)
        try:
            result = pending.attempt()
        except EngineError as exc:
            self.pending = None
            self.check_return_time(pending.event, pending.start, pending.since, self.now)
            self.check_result(pending.event, call, -1, exc.errno)
            return
        if result is None:
            return
        self.pending = None
        self.check_return_time(pending.event, pending.start, pending.since, self.now)
        self.check_result(pending.event, call, result, None)

    def finish_pending(self) -> None:
        """Wait (in virtual time) for a blocked call to return."""
        while self.pending is not None:
            if not self.step():
                raise self.fail("the blocking system call never returned", self.pending.event)

    def blocking(
        self, fd: Fd, attempt: Callable[[], int], flags: int = 0
    ) -> int | Callable[[], int | None]:
        """Run ``attempt`` now; on a blocking socket, keep trying while it would block."""
        try:
            return attempt()
        except EngineError as exc:
            if exc.errno not in (errno_mod.EAGAIN, errno_mod.EINPROGRESS):
                raise
            if fd.nonblocking or flags & socket_mod.MSG_DONTWAIT:
                raise

        def again() -> int | None:
            try:
                return attempt()
            except EngineError as exc:
                if exc.errno in (errno_mod.EAGAIN, errno_mod.EINPROGRESS):
                    return None
                raise

        return again

    def sys_socket(self, domain: Expr, kind: Expr, protocol: Expr) -> int:
        family = self.value(domain)
        if family is None:
            family = socket_mod.AF_INET if self.local.version == 4 else socket_mod.AF_INET6
        type_ = self.value(kind) or socket_mod.SOCK_STREAM
        if type_ & ~socket_mod.SOCK_NONBLOCK != socket_mod.SOCK_STREAM:
            raise self.fail("only SOCK_STREAM sockets are supported")
        sock = self.host.socket(family)
        return self.new_fd(Fd(sock, bool(type_ & socket_mod.SOCK_NONBLOCK)), self.expected_result())

    def sys_fcntl(self, fd: Expr, cmd: Expr, arg: Expr = ELLIPSIS) -> int:
        entry = self.fd(fd)
        command = self.value(cmd)
        if command == SYMBOLS["F_SETFL"]:
            entry.nonblocking = bool((self.value(arg) or 0) & os.O_NONBLOCK)
            return 0
        if command == SYMBOLS["F_GETFL"]:
            return os.O_RDWR | (os.O_NONBLOCK if entry.nonblocking else 0)
        raise self.fail("fcntl supports F_GETFL and F_SETFL")

    def sys_setsockopt(self, fd: Expr, level: Expr, name: Expr, value: Expr, length: Expr) -> int:
        sock = self.fd(fd).sock
        size = self.value(length)
        data: int | bytes
        if isinstance(value, Quoted):
            raw = value.data
            data = raw[:size].ljust(size, b"\0") if size is not None else raw
        else:
            data = self.value(value) or 0
        sock.setsockopt(self.value(level) or 0, self.value(name) or 0, data, self.now)
        return 0

    def sys_getsockopt(self, fd: Expr, level: Expr, name: Expr, value: Expr, length: Expr) -> int:
        sock = self.fd(fd).sock
        actual = sock.getsockopt(self.value(level) or 0, self.value(name) or 0, self.now)
        if isinstance(actual, int) and isinstance(value, ListExpr):
            expected = self.value(value)
            if expected is not None and expected != actual:
                raise self.fail(f"getsockopt: expected value {expected} but got {actual}")
        if isinstance(actual, TcpInfo) and isinstance(value, StructExpr):
            self.check_tcp_info(info_fields(actual), value)
        return 0

    def sys_bind(self, fd: Expr, addr: Expr, addrlen: Expr) -> int:
        self.fd(fd).sock.bind((str(self.local), self.config.bind_port))
        return 0

    def sys_ioctl(self, fd: Expr, request: Expr, arg: Expr = ELLIPSIS) -> int:
        self.check_ioctl(arg, self.fd(fd).sock.ioctl(self.value(request) or 0))
        return 0

    def sys_listen(self, fd: Expr, backlog: Expr) -> int:
        self.fd(fd).sock.listen(self.value(backlog) or 0)
        self.flow = None
        return 0

    def sys_accept(self, fd: Expr, addr: Expr, addrlen: Expr) -> int | Callable[[], int | None]:
        entry = self.fd(fd)
        want = self.expected_result()

        def attempt() -> int:
            child, _ = entry.sock.accept(self.now)
            if self.flow is not None and self.flow.passive and self.flow.sock is None:
                self.flow.sock = child
            return self.new_fd(Fd(child), want)

        return self.blocking(entry, attempt)

    def start_active(self, sock: EngineSocket) -> None:
        """A connect or a first sendto: this socket becomes the socket under test."""
        if sock.conn is None or sock.state is TcpState.CLOSED:
            self.flow = Flow(False, self.config.connect_port, None, sock)

    def sys_connect(self, fd: Expr, addr: Expr, addrlen: Expr) -> int | Callable[[], int | None]:
        entry = self.fd(fd)
        sock = entry.sock
        if isinstance(addr, Name) and addr.name == "AF_UNSPEC":
            sock.disconnect(self.now)  # Linux tcp_disconnect
            return 0
        self.start_active(sock)
        try:
            sock.connect((str(self.remote), self.config.connect_port), self.now)
            return 0
        except EngineError as exc:
            if exc.errno != errno_mod.EINPROGRESS or entry.nonblocking:
                raise

        def attempt() -> int | None:
            if sock.state is TcpState.SYN_SENT:
                return None
            error = sock.getsockopt(socket_mod.SOL_SOCKET, socket_mod.SO_ERROR)
            if isinstance(error, int) and error:
                raise EngineError(error)
            return 0

        return attempt

    def send_all(
        self,
        entry: Fd,
        total: int,
        first: Callable[[], int],
        flags: int,
        iov: Sequence[int] | None = None,
    ) -> int | Callable[[], int | None]:
        """A send of ``total`` bytes (from the buffers of lengths ``iov``, when a sendmsg's);
        blocking sockets wait for the connection and the buffer, and go on with the rest of
        the same buffers."""
        sock = entry.sock
        blocking = not entry.nonblocking and not flags & socket_mod.MSG_DONTWAIT
        try:
            sent = first()
        except EngineError as exc:
            if not blocking or exc.errno not in (errno_mod.EINPROGRESS, errno_mod.EAGAIN):
                raise
            sent = 0
        if not blocking or sent == total:
            return sent
        done = [sent]
        # A writer waiting for the connection (Linux sk_write_pending): the engine holds the ACK
        # of the SYN-ACK back for the data.
        waiting = [sock.state is TcpState.SYN_SENT]
        sock.write_pending += waiting[0]

        def stop_waiting() -> None:
            sock.write_pending -= waiting[0]
            waiting[0] = False

        def attempt() -> int | None:
            rest = None if iov is None else buffers_after(iov, done[0])
            try:
                done[0] += sock.send(bytes(total - done[0]), self.now, flags, rest)
            except EngineError as exc:
                if exc.errno == errno_mod.EAGAIN:
                    return None
                stop_waiting()
                raise
            stop_waiting()
            return total if done[0] >= total else None

        return attempt

    def sys_sendto(
        self, fd: Expr, buf: Expr, length: Expr, flags: Expr, addr: Expr, addrlen: Expr
    ) -> int | Callable[[], int | None]:
        unspec = isinstance(addr, Name) and addr.name == "AF_UNSPEC"
        total, bits = self.value(length) or 0, self.value(flags) or 0
        if is_null(buf) and total:
            target = AF_UNSPEC_ADDRESS if unspec else (str(self.remote), self.config.connect_port)
            self.null_send(self.fd(fd), bits, target)
        return self.send_to(self.fd(fd), total, bits, unspec)

    def null_send(self, entry: Fd, flags: int, addr: tuple[str, int] | None = None) -> NoReturn:
        """A send from a NULL buffer (EngineSocket.send_unreadable): EFAULT, or what the socket's
        state says first; a Fast Open one sends its SYN (with a cookie request) and gives
        EINPROGRESS."""
        entry.sock.send_unreadable(flags, addr, self.now)

    def null_recv(self, entry: Fd, flags: int) -> int | Callable[[], int | None]:
        """A recv into a NULL buffer: EFAULT when there is data to copy (tcp_recvmsg_locked,
        the data stays), else what recv says (EAGAIN, 0 at the end, an error)."""

        def attempt() -> int:
            if entry.sock.ioctl(SIOCINQ):
                raise EngineError(errno_mod.EFAULT)
            return len(entry.sock.recv(0, self.now))

        return self.blocking(entry, attempt, flags)

    def sys_sendmsg(self, fd: Expr, msg: Expr, flags: Expr) -> int | Callable[[], int | None]:
        iov = self.iov_lengths(msg)
        return self.send_to(self.fd(fd), sum(iov), self.value(flags) or 0, iov=iov)

    def send_to(
        self, entry: Fd, total: int, flags: int, unspec: bool = False, iov: list[int] | None = None
    ) -> int | Callable[[], int | None]:
        """sendto/sendmsg (the lengths of its buffers ``iov``) to the script's remote address
        (MSG_FASTOPEN starts a connection), or to an address of family AF_UNSPEC."""
        if flags & K.MSG_FASTOPEN:
            self.start_active(entry.sock)
        target = AF_UNSPEC_ADDRESS if unspec else (str(self.remote), self.config.connect_port)
        buffers = [bytes(total)] if iov is None else [bytes(n) for n in iov]

        def first() -> int:
            return entry.sock.sendmsg(buffers, flags, target, self.now)

        return self.send_all(entry, total, first, flags, iov)

    def sys_send(
        self, fd: Expr, buf: Expr, length: Expr, flags: Expr
    ) -> int | Callable[[], int | None]:
        entry = self.fd(fd)
        total = self.value(length) or 0
        bits = self.value(flags) or 0
        if is_null(buf) and total:
            self.null_send(entry, bits)

        def first() -> int:
            return entry.sock.sendto(bytes(total), bits, None, self.now)

        return self.send_all(entry, total, first, bits)

    def sys_write(self, fd: Expr, buf: Expr, length: Expr) -> int | Callable[[], int | None]:
        return self.sys_send(fd, buf, length, 0)

    def sys_open(self, path: Expr, flags: Expr, mode: Expr = ELLIPSIS) -> int:
        """open() of a file the script made (ScriptFiles), read-only: ENOENT for another."""
        if not isinstance(path, Quoted):
            raise self.fail("open() needs a path in quotes")
        if (self.value(flags) or 0) & os.O_ACCMODE != os.O_RDONLY:
            raise self.fail("open() of a script's file is read-only (O_RDONLY)")
        data = self.files.data.get(path.data.decode(errors="replace"))
        if data is None:
            raise EngineError(errno_mod.ENOENT)
        return self.new_fd(File(data), self.expected_result())

    def sys_sendfile(
        self, out_fd: Expr, in_fd: Expr, offset: Expr, count: Expr
    ) -> int | Callable[[], int | None]:
        """sendfile(): ``count`` bytes of the file from ``[offset]`` (its own offset for NULL,
        which moves) written to the socket as a write() of them (Linux splices the pages into
        tcp_sendmsg_locked). The script's files hold zeros (``dd if=/dev/zero``), as the
        payloads packetdrill expects."""
        entry = self.fd(out_fd)
        number = self.value(in_fd)
        source = self.fds.get(number) if number is not None else None
        if not isinstance(source, File):
            raise EngineError(errno_mod.EBADF)
        start = source.offset if is_null(offset) else self.value(offset) or 0
        total = len(source.data[start : start + (self.value(count) or 0)])

        def first() -> int:
            return entry.sock.sendto(bytes(total), 0, None, self.now)

        result = self.send_all(entry, total, first, 0)
        if is_null(offset) and isinstance(result, int):
            source.offset += result
        return result

    def sys_recv(
        self, fd: Expr, buf: Expr, length: Expr, flags: Expr
    ) -> int | Callable[[], int | None]:
        entry = self.fd(fd)
        size = self.value(length) or 0
        bits = self.value(flags) or 0
        if bits & socket_mod.MSG_OOB:  # Linux tcp_recv_urg: never blocks
            byte = entry.sock.recv_oob(bool(bits & socket_mod.MSG_PEEK))
            return min(len(byte), size)
        if is_null(buf) and size:
            return self.null_recv(entry, bits)
        return self.blocking(entry, lambda: len(entry.sock.recv(size, self.now)), bits)

    def sys_recvfrom(
        self, fd: Expr, buf: Expr, length: Expr, flags: Expr, addr: Expr, addrlen: Expr
    ) -> int | Callable[[], int | None]:
        return self.sys_recv(fd, buf, length, flags)

    def sys_read(self, fd: Expr, buf: Expr, length: Expr) -> int | Callable[[], int | None]:
        return self.sys_recv(fd, buf, length, 0)

    def recv_error_queue(self, entry: Fd, msg: Expr) -> int:
        """recvmsg(MSG_ERRQUEUE): the oldest notice as its IP_RECVERR (IPV6_RECVERR) cmsg; a
        timestamp's (ee_errno ENOMSG) comes after its SCM_TIMESTAMPING cmsg (with
        SOF_TIMESTAMPING_SOFTWARE) and, without OPT_TSONLY, with the packet it stamped, which
        an empty iov truncates (MSG_TRUNC; the engine does not keep that packet's bytes)."""
        sock = entry.sock
        notice = sock.recv_error()
        v6 = sock.family == socket_mod.AF_INET6
        level, kind = (socket_mod.IPPROTO_IPV6, IPV6_RECVERR) if v6 else (0, IP_RECVERR)
        zerocopy = notice.origin == SO_EE_ORIGIN_ZEROCOPY
        err = {
            "ee_errno": 0 if zerocopy else errno_mod.ENOMSG,
            "ee_origin": notice.origin,
            "ee_type": 0,
            "ee_code": SO_EE_CODE_ZEROCOPY_COPIED if zerocopy else 0,
            "ee_pad": 0,
            "ee_info": notice.info,
            "ee_data": notice.data,
        }
        cmsgs: list[tuple[int, int, dict[str, int] | int]] = []
        out_flags = MSG_ERRQUEUE
        tsflags = sock.errqueue.tsflags if sock.errqueue is not None else 0
        if not zerocopy:
            if not tsflags & SOF_TIMESTAMPING_OPT_TSONLY:
                if sum(self.iov_lengths(msg)):
                    raise self.fail("recvmsg(MSG_ERRQUEUE) of a stamped packet's bytes")
                out_flags |= MSG_TRUNC
            if tsflags & SOF_TIMESTAMPING_SOFTWARE:
                usecs = round(notice.when * 1e6)
                stamp = {"scm_sec": usecs // 1_000_000, "scm_nsec": usecs % 1_000_000 * 1000}
                cmsgs.append((socket_mod.SOL_SOCKET, SCM_TIMESTAMPING, stamp))
        cmsgs.append((level, kind, err))
        self.check_msghdr(msg, out_flags, cmsgs)
        return 0

    def sys_recvmsg(self, fd: Expr, msg: Expr, flags: Expr) -> int | Callable[[], int | None]:
        """recvmsg: with MSG_ERRQUEUE the oldest notice of the error queue
        (:meth:`recv_error_queue`); else the data, into ``msg_iov``."""
        entry = self.fd(fd)
        bits = self.value(flags) or 0
        if bits & MSG_ERRQUEUE:
            return self.recv_error_queue(entry, msg)
        size = sum(self.iov_lengths(msg))

        def attempt() -> int:
            sock = entry.sock
            got = len(sock.recv(size, self.now))
            inq = [(socket_mod.IPPROTO_TCP, TCP_INQ, sock.inq_hint())] if sock.options.inq else []
            self.check_msghdr(msg, 0, inq)
            return got

        return self.blocking(entry, attempt, bits)

    def sys_shutdown(self, fd: Expr, how: Expr) -> int:
        self.fd(fd).sock.shutdown(self.value(how) or 0, self.now)
        return 0

    def sys_pipe(self, fds: Expr) -> int:
        """``pipe([R, W])``: a pipe whose ends get the script's numbers R and W."""
        if not isinstance(fds, ListExpr) or len(fds.items) != 2:
            raise self.fail("pipe needs [READ_FD, WRITE_FD]")
        data = bytearray()
        read_fd, write_fd = (self.value(item) for item in fds.items)
        self.new_fd(Pipe(data, write_end=False), ELLIPSIS if read_fd is None else read_fd)
        self.new_fd(Pipe(data, write_end=True), ELLIPSIS if write_fd is None else write_fd)
        return 0

    def sys_splice(
        self, fd_in: Expr, off_in: Expr, fd_out: Expr, off_out: Expr, length: Expr, flags: Expr
    ) -> int | Callable[[], int | None]:
        """splice() from a socket into a pipe (Linux tcp_splice_read: what a read would give,
        but never past an urgent mark, nor the pipe's room); offsets must be NULL."""
        entry = self.fd(fd_in)
        number = self.value(fd_out)
        pipe = self.fds.get(number) if number is not None else None
        if not isinstance(pipe, Pipe) or not pipe.write_end:
            raise EngineError(errno_mod.EINVAL)
        if not (is_null(off_in) and is_null(off_out)):
            raise EngineError(errno_mod.ESPIPE)
        size = self.value(length) or 0

        def attempt() -> int:
            room = PIPE_CAPACITY - len(pipe.data)
            if not room:
                raise EngineError(errno_mod.EAGAIN)
            data = entry.sock.recv(min(size, room), self.now, splice=True)
            pipe.data += data
            return len(data)

        return self.blocking(entry, attempt)

    def sys_close(self, fd: Expr) -> int:
        number = self.value(fd)
        if number is None or number not in self.fds:
            raise EngineError(errno_mod.EBADF)
        entry = self.fds.pop(number)
        if isinstance(entry, Fd):
            entry.sock.close(self.now)
        return 0

    # -- poll and epoll ----------------------------------------------------------------------------

    def revents(self, number: int, events: int) -> int:
        """poll's revents of descriptor ``number`` for ``events`` (errors and hang-ups always)."""
        entry = self.fds.get(number)
        if entry is None:
            return select.POLLNVAL
        if isinstance(entry, Epoll):
            return 0  # nothing the scripts wait for
        if isinstance(entry, Pipe):
            ready = len(entry.data) < PIPE_CAPACITY if entry.write_end else bool(entry.data)
            mask = (select.POLLOUT if entry.write_end else select.POLLIN) if ready else 0
            return mask & events
        if isinstance(entry, File):  # Linux DEFAULT_POLLMASK: a regular file is always ready
            always = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM
            return always & events
        return entry.sock.poll() & (events | select.POLLERR | select.POLLHUP)

    def sys_poll(self, fds: Expr, nfds: Expr, timeout: Expr) -> int | Waiting:
        """``poll([{fd=N, events=..., revents=...}, ...], n, ms)``; each revents is checked."""
        event = self.event
        entries, ms = self.poll_args(fds, nfds, timeout)
        deadline = None if ms < 0 else self.now + ms / 1000

        def attempt() -> int | None:
            got = [self.revents(number, events) for number, events, _ in entries]
            count = sum(1 for r in got if r)
            if not count and (deadline is None or self.now < deadline):
                return None
            self.check_revents(entries, got, event)
            return count

        return Waiting(attempt, deadline)

    def sys_epoll_create(self, size: Expr) -> int:
        if (self.value(size) or 0) <= 0:
            raise EngineError(errno_mod.EINVAL)
        return self.new_fd(Epoll(), self.expected_result())

    def epoll(self, expr: Expr) -> Epoll:
        number = self.value(expr)
        entry = self.fds.get(number) if number is not None else None
        if entry is None:
            raise EngineError(errno_mod.EBADF)
        if not isinstance(entry, Epoll):
            raise EngineError(errno_mod.EINVAL)
        return entry

    def sys_epoll_ctl(self, epfd: Expr, op: Expr, fd: Expr, event: Expr) -> int:
        """ADD, MOD or DEL ``fd`` with ``{events=..., fd=N}``; ADD and MOD check readiness
        at once, as Linux's ep_insert and ep_modify do."""
        entry = self.epoll(epfd)
        number = self.value(fd)
        if number is None or number not in self.fds:
            raise EngineError(errno_mod.EBADF)
        operation = self.value(op)
        if operation == EPOLL_CTL_DEL:
            if entry.interest.pop(number, None) is None:
                raise EngineError(errno_mod.ENOENT)
            return 0
        events, data = self.epoll_event(event)
        if (operation == EPOLL_CTL_ADD) == (number in entry.interest):
            raise EngineError(errno_mod.EEXIST if operation == EPOLL_CTL_ADD else errno_mod.ENOENT)
        if operation not in (EPOLL_CTL_ADD, EPOLL_CTL_MOD):
            raise EngineError(errno_mod.EINVAL)
        entry.interest[number] = Interest(events, data)
        return 0

    def epoll_event(self, expr: Expr) -> tuple[int, int]:
        """``{events=..., fd=N}``: the events and the epoll_data union, which packetdrill also
        writes ``ptr=``, ``u32=`` or ``u64=``."""
        fields = self.struct_fields(expr, ("events",), "struct epoll_event")
        data = [fields[name] for name in EPOLL_DATA if name in fields]
        if len(data) != 1:
            raise self.fail("struct epoll_event: give one of fd, ptr, u32, u64")
        return fields["events"], data[0]

    def sys_epoll_wait(
        self, epfd: Expr, events: Expr, maxevents: Expr, timeout: Expr
    ) -> int | Waiting:
        """The ready descriptors, up to ``maxevents``; the first must be the script's
        ``{events=..., fd=N}`` (packetdrill checks the first). An edge-triggered one is
        reported once per wakeup of its socket, a one-shot one once until EPOLL_CTL_MOD."""
        entry = self.epoll(epfd)
        call_event = self.event
        want_events, want_data = self.epoll_event(events)
        limit = self.value(maxevents) or 0
        if limit <= 0:
            raise EngineError(errno_mod.EINVAL)
        ms = self.value(timeout)
        deadline = None if ms is None or ms < 0 else self.now + ms / 1000

        def attempt() -> int | None:
            ready: list[tuple[int, int]] = []
            for number, interest in entry.interest.items():
                if len(ready) >= limit:
                    break
                if interest.events & select.EPOLLET and not interest.woken:
                    continue
                if not interest.events & ~EPOLL_FLAGS:
                    continue  # a one-shot one that reported: disabled until EPOLL_CTL_MOD
                mask = self.revents(number, interest.events & ~EPOLL_FLAGS)
                interest.woken = False  # off the ready list (ep_send_events)
                if mask:
                    ready.append((mask, interest.data))
                    if interest.events & select.EPOLLONESHOT:
                        interest.events &= EPOLL_FLAGS
            if not ready and (deadline is None or self.now < deadline):
                return None
            if ready and (ready[0][0], ready[0][1]) != (want_events, want_data):
                raise self.fail(
                    f"epoll_event does not match script: expected events 0x{want_events:x} "
                    f"fd {want_data}, actual events 0x{ready[0][0]:x} fd {ready[0][1]}",
                    call_event,
                )
            return len(ready)

        return Waiting(attempt, deadline)

    # -- %{ }% -------------------------------------------------------------------------------------

    def flow_socket(self) -> EngineSocket | None:
        flow = self.flow
        if flow is None:
            return None
        if flow.sock is None and flow.passive and flow.local_port is not None:
            key = (self.local, flow.local_port, self.remote, flow.remote_port)
            conn = self.host.connections.get(key)
            if conn is not None:
                flow.sock = conn.sock
        return flow.sock

    def tcp_info_fields(self) -> dict[str, int]:
        sock = self.flow_socket()
        if sock is None:
            raise self.fail("a %{ }% block, but there is no socket under test")
        return info_fields(sock.tcp_info(self.now))
