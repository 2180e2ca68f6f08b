"""Runs a packetdrill script against the real Linux kernel, in real time, as packetdrill does.

Each run gets a fresh network namespace (``fo-pd-...``) with a TUN device (IFF_TUN|IFF_NO_PI)
that carries the script's local address, and a route to the script's remote address through it.
The script's system calls act on real kernel sockets made in that namespace (a blocking call runs
in a worker thread while the script goes on); its inbound packets are built with
:mod:`fastopen.wire` (relative numbers mapped to absolute, checksums computed) and written to the
TUN device; what the kernel sends is read from the device, stamped on arrival, and matched as for
the engine. Backtick sysctl lines set the namespace's real sysctls; ``%{ }%`` blocks see the
kernel socket's ``TCP_INFO`` (the fields :mod:`fastopen.kernel.tcpinfo` reads: tcpi_state,
tcpi_options, tcpi_fastopen_client_fail, tcpi_rtt, tcpi_total_retrans). When the runner itself
is late (a loaded machine), the script's clock waits for it, so that the timing checks measure
the kernel, with a default tolerance of 25 ms. The namespace, the device and the threads go on
every exit path.

Addresses must be inside 198.18.0.0/15 or fd00::/8 (scripts give theirs with ``--local_ip`` and
``--remote_ip``): nothing else is ever configured, even inside the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as errno_mod
import fcntl
import ipaddress
import os
import queue
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastopen import constants as K
from fastopen.engine.icmp import IcmpError
from fastopen.errors import FastOpenError, MalformedPacket, NeedsRoot
from fastopen.kernel import counters as kernel_counters
from fastopen.kernel import netlink, tcp_metrics, tcpinfo
from fastopen.lab.emulator import check_support
from fastopen.lab.netns import Netns
from fastopen.packetdrill.errors import ScriptError
from fastopen.packetdrill.packets import icmp_packet
from fastopen.packetdrill.runner import (
    Config,
    Flow,
    RunResult,
    ScriptRunner,
)
from fastopen.packetdrill.script import (
    ELLIPSIS,
    Event,
    Expr,
    ListExpr,
    Name,
    Quoted,
    Script,
    StructExpr,
    Syscall,
)
from fastopen.packetdrill.shell import DEVICE, Route, ShellCommands
from fastopen.runtime.tun import open_tun, route_into
from fastopen.wire import IPAddress, TcpSegment, ip_packet, parse_tcp_packet

_libc = ctypes.CDLL(None, use_errno=True)
#: The only addresses the kernel backend configures (RFC 2544 benchmarking, unique local).
ALLOWED_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("fd00::/8"))
TCP_CLOSE = 7  # Linux's tcpi_state of a socket neither connected nor connecting
#: How long past its expected time the runner waits for a packet (to report it late, not missing).
LATE_WAIT = 0.5
#: How long a ``*`` packet, or a blocking call at the end, may take.
ANY_WAIT = 10.0
#: System calls that may block, run in a worker thread unless the socket is non-blocking.
BLOCKING_CALLS = frozenset(
    {"accept", "connect", "read", "recv", "write", "send", "sendto", "sendmsg"}
)
#: The namespace's IPv6 quiet: no duplicate address detection, no link-local address, no router
#: solicitations (packetdrill likewise ignores what is not the script's).
QUIET_SYSCTLS = (
    ("net.ipv6.conf.all.accept_dad", "0"),
    ("net.ipv6.conf.default.accept_dad", "0"),
    ("net.ipv6.conf.all.addr_gen_mode", "1"),
    ("net.ipv6.conf.default.addr_gen_mode", "1"),
    ("net.ipv6.conf.default.router_solicitations", "0"),
)
#: ``tcpi_*`` names of :class:`fastopen.kernel.tcpinfo.TcpInfo` fields.
TCPI_FIELDS = {
    "tcpi_state": "state",
    "tcpi_options": "options",
    "tcpi_fastopen_client_fail": "fastopen_client_fail",
    "tcpi_rtt": "rtt_us",
    "tcpi_total_retrans": "total_retrans",
}


def disconnect(sock: socket.socket) -> int:
    """``connect(fd, AF_UNSPEC)`` (Linux tcp_disconnect), which Python's connect cannot say."""
    unspec = struct.pack("=H14x", socket.AF_UNSPEC)
    if _libc.connect(sock.fileno(), unspec, len(unspec)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return 0


def check_addresses(local: IPAddress, remote: IPAddress, path: str) -> None:
    """Refuse addresses outside :data:`ALLOWED_NETWORKS`."""
    for name, address in (("local", local), ("remote", remote)):
        if not any(address in net for net in ALLOWED_NETWORKS):
            raise ScriptError(
                path,
                0,
                f"the kernel backend only uses 198.18.0.0/15 and fd00::/8, not the {name} "
                f"address {address}",
                hint="give the script --local_ip=198.18.0.1 --remote_ip=198.18.0.2 (or "
                "--local_ip=fd00:f0::1 --remote_ip=fd00:f0::2) option lines",
            )


class KernelStack:
    """The real sysctls of the namespace: any ``net.*`` name the kernel has."""

    def __init__(self, ns: Netns) -> None:
        self.ns = ns

    def sysctl(self, name: str, value: str) -> bool:
        if not name.startswith("net."):
            return False
        try:
            self.ns.sysctl(name, value)
        except (FastOpenError, OSError):
            return False
        return True

    def flush_metrics(self) -> None:
        with self.ns.entered():
            tcp_metrics.flush()

    def counters(self) -> dict[str, int]:
        with self.ns.entered():
            return {"TcpExt" + name: value for name, value in kernel_counters.tcpext().items()}

    def proc_net_tcp(self, version: int) -> list[str]:
        """The namespace's own /proc/net/tcp or tcp6 (the calling thread's, so thread-self)."""
        name = "tcp" if version == 4 else "tcp6"
        with self.ns.entered(), open(f"/proc/thread-self/net/{name}") as f:
            return f.read().splitlines()

    def offload(self, features: dict[str, bool]) -> bool:
        """The namespace's TUN device's offloads, with ethtool."""
        args = [word for name, on in features.items() for word in (name, "on" if on else "off")]
        return self._run(["ethtool", "-K", DEVICE, *args])

    def qdisc(self, name: str) -> bool:
        """The namespace's TUN device's root qdisc, with tc (pfifo_fast: the default again)."""
        if name == "pfifo_fast":
            self._run(["tc", "qdisc", "delete", "dev", DEVICE, "root"])  # none: already so
            return True
        return self._run(["tc", "qdisc", "replace", "dev", DEVICE, "root", *name.split()])

    def module_param(self, module: str, name: str, value: str) -> bool:
        """Refused: a module's parameters are the whole machine's, not the namespace's."""
        return False

    def _run(self, args: list[str]) -> bool:
        try:
            return self.ns.run(args, check=False).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def route(self, route: Route) -> bool:
        """The namespace's real route, for a prefix inside the allowed networks and on the
        script's device only."""
        network = route.network
        inside = any(
            network.subnet_of(allowed)  # type: ignore[arg-type]
            for allowed in ALLOWED_NETWORKS
            if allowed.version == network.version
        )
        if route.device != DEVICE or not inside:
            return False
        with self.ns.entered():
            try:
                sock = netlink.open_socket(netlink.NETLINK_ROUTE)
                with sock:
                    index = socket.if_nametoindex(DEVICE)
                    netlink.set_route(sock, route.verb, network, index, route.feature_bits)
            except OSError:
                return False
        return True


@dataclass(slots=True)
class Pending:
    """A blocking system call running in its worker thread."""

    event: Event
    call: Syscall
    start: float
    since: float
    thread: threading.Thread
    outcome: int | socket.socket | OSError | ScriptError | None = None
    returned: float = 0.0  # time.monotonic() when the call returned


class KernelRunner(ScriptRunner[socket.socket, socket.socket]):
    """One run of one script against the kernel of a fresh namespace; use :func:`run_kernel`."""

    def __init__(self, script: Script, config: Config, ns: Netns, tun: int) -> None:
        super().__init__(script, config)
        self.ns = ns
        self.tun = tun
        self.packets: queue.Queue[tuple[float, TcpSegment]] = queue.Queue()
        self.pending: Pending | None = None
        self.stop_reader = threading.Event()
        self.reader = threading.Thread(target=self.read_tun, name="packetdrill-tun", daemon=True)
        self.t0 = time.monotonic()

    def close(self) -> None:
        """Stop the reader and close every socket (a blocked worker returns with an error)."""
        self.stop_reader.set()
        for sock in self.fds.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self.pending is not None:
            self.pending.thread.join(timeout=1.0)
        if self.reader.is_alive():
            self.reader.join(timeout=1.0)

    # -- time --------------------------------------------------------------------------------------

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def wait_until(self, when: float) -> None:
        """Sleep until script time ``when``; when the runner is late (a loaded machine), the
        script's clock waits for it, so that only the kernel's own delays are measured."""
        delay = when - self.clock()
        if delay > 0:
            time.sleep(delay)
        else:
            self.t0 -= delay

    # -- packets -----------------------------------------------------------------------------------

    def read_tun(self) -> None:
        """The reader thread: stamp (monotonic clock) and queue every TCP segment from local to
        remote."""
        while not self.stop_reader.is_set():
            ready, _, _ = select.select([self.tun], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.tun, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            when = time.monotonic()
            try:
                packet, seg = parse_tcp_packet(data)
            except MalformedPacket:
                continue  # not TCP (ICMPv6 and the like): not the script's
            if packet.src == self.local and packet.dst == self.remote:
                self.packets.put((when, seg))

    def send_segment(self, seg: TcpSegment) -> None:
        os.write(self.tun, ip_packet(self.remote, self.local, seg))

    def next_packet(self, start: float, end: float | None) -> tuple[float, TcpSegment] | None:
        tol = self.tolerance(start, self.last_time)
        deadline = (start + ANY_WAIT if end is None else end) + tol + LATE_WAIT
        while True:
            timeout = deadline - self.clock()
            if timeout <= 0:
                return None
            try:
                when, seg = self.packets.get(timeout=timeout)
            except queue.Empty:
                return None
            if self.belongs(self.local, self.remote, seg):
                return when - self.t0, seg

    def send_icmp(self, error: IcmpError) -> None:
        os.write(self.tun, icmp_packet(error))

    def shell(self, command: str) -> str | None:
        """Run the commands; the time they take is not script time (the clock stops)."""
        began = time.monotonic()
        try:
            return ShellCommands(KernelStack(self.ns), self.files, sh_defaults=True).run(command)
        finally:
            self.t0 += time.monotonic() - began

    def shell_hint(self) -> str:
        return (
            "the kernel backend runs sysctl (net.*), defaults.sh, set_sysctls.py, ip tcp_metrics "
            f"and ip route (dev {DEVICE}, inside 198.18.0.0/15 or fd00::/8)"
        )

    # -- system calls ------------------------------------------------------------------------------

    def fd(self, expr: Expr) -> socket.socket:
        number = self.value(expr)
        if number is None or number not in self.fds:
            raise OSError(errno_mod.EBADF, os.strerror(errno_mod.EBADF))
        return self.fds[number]

    def would_block(self, call: Syscall) -> bool:
        """A call that may block on a blocking socket (packetdrill gives it a thread)."""
        if call.name == "poll":
            return len(call.args) == 3 and self.value(call.args[2]) != 0
        if call.name not in BLOCKING_CALLS or not call.args:
            return False
        number = self.value(call.args[0])
        if number is None or number not in self.fds:
            return False
        if fcntl.fcntl(self.fds[number].fileno(), fcntl.F_GETFL) & os.O_NONBLOCK:
            return False
        flags = 0
        if call.name in ("recv", "send", "sendto") and len(call.args) >= 4:
            flags = self.value(call.args[3]) or 0
        elif call.name == "sendmsg" and len(call.args) == 3:
            flags = self.value(call.args[2]) or 0
        return not flags & socket.MSG_DONTWAIT

    def syscall(self, event: Event, call: Syscall) -> None:
        handler = self.handler(call)
        if self.would_block(call):
            self.start_pending(event, call, handler)
            return
        try:
            outcome = handler(*call.args)
        except OSError as exc:
            self.check_result(event, call, -1, exc.errno)
            return
        self.check_result(event, call, self.result(outcome), None)

    def result(self, outcome: int | socket.socket) -> int:
        if isinstance(outcome, socket.socket):
            return self.accepted(outcome)
        return outcome

    def start_pending(
        self, event: Event, call: Syscall, handler: Callable[..., int | socket.socket]
    ) -> None:
        def work() -> None:
            try:
                outcome: int | socket.socket | OSError | ScriptError = handler(*call.args)
            except (OSError, ScriptError) as exc:  # the result, or the script's own mistake
                outcome = exc
            pending.returned = time.monotonic()
            pending.outcome = outcome

        thread = threading.Thread(target=work, name=f"packetdrill-{call.name}", daemon=True)
        pending = Pending(event, call, self.event_window(event)[0], self.last_time, thread)
        self.pending = pending
        thread.start()

    def finish_pending(self) -> None:
        pending = self.pending
        if pending is None:
            return
        end = pending.start
        if pending.event.time.end is not None:
            end = pending.event.time.end + (pending.start if pending.event.time.end_relative else 0)
        pending.thread.join(timeout=max(end - self.clock(), 0.0) + ANY_WAIT)
        if pending.thread.is_alive():
            raise self.fail("the blocking system call never returned", pending.event)
        self.pending = None
        outcome = pending.outcome
        if isinstance(outcome, ScriptError):
            raise outcome
        returned = pending.returned - self.t0
        self.check_return_time(pending.event, pending.start, pending.since, returned)
        self.call = pending.call
        if isinstance(outcome, OSError):
            self.check_result(pending.event, pending.call, -1, outcome.errno)
        else:
            assert outcome is not None
            self.check_result(pending.event, pending.call, self.result(outcome), None)

    def accepted(self, child: socket.socket) -> int:
        """A socket ``accept`` returned: it gets the descriptor the script expects."""
        flow = self.flow
        if flow is not None and flow.passive and flow.sock is None:
            flow.sock = child
        return self.new_fd(child, self.expected_result())

    def sys_socket(self, domain: Expr, kind: Expr, protocol: Expr) -> int:
        family = self.value(domain)
        if family is None:
            family = socket.AF_INET if self.local.version == 4 else socket.AF_INET6
        type_ = self.value(kind) or socket.SOCK_STREAM
        if type_ & ~socket.SOCK_NONBLOCK != socket.SOCK_STREAM:
            raise self.fail("only SOCK_STREAM sockets are supported")
        with self.ns.entered():
            sock = socket.socket(family, type_, socket.IPPROTO_TCP)
        return self.new_fd(sock, self.expected_result())

    def sys_fcntl(self, fd: Expr, cmd: Expr, arg: Expr = ELLIPSIS) -> int:
        sock = self.fd(fd)
        command = self.value(cmd)
        if command == fcntl.F_SETFL:
            flags = self.value(arg) or 0
            result = fcntl.fcntl(sock.fileno(), fcntl.F_SETFL, flags)
            # Python's own blocking mode must agree, or its connect() waits on a non-blocking fd.
            sock.setblocking(not flags & os.O_NONBLOCK)
            return result
        if command == fcntl.F_GETFL:
            return fcntl.fcntl(sock.fileno(), fcntl.F_GETFL)
        raise self.fail("fcntl supports F_GETFL and F_SETFL")

    def sys_ioctl(self, fd: Expr, request: Expr, arg: Expr = ELLIPSIS) -> int:
        out = bytearray(4)
        result = fcntl.ioctl(self.fd(fd).fileno(), self.value(request) or 0, out)
        self.check_ioctl(arg, int.from_bytes(out, sys.byteorder, signed=True))
        return int(result)

    def sys_setsockopt(self, fd: Expr, level: Expr, name: Expr, value: Expr, length: Expr) -> int:
        sock = self.fd(fd)
        size = self.value(length)
        level_, name_ = self.value(level) or 0, self.value(name) or 0
        if isinstance(value, Quoted):
            raw = value.data
            sock.setsockopt(level_, name_, raw[:size].ljust(size, b"\0") if size else raw)
        else:
            sock.setsockopt(level_, name_, self.value(value) or 0)
        return 0

    def sys_getsockopt(self, fd: Expr, level: Expr, name: Expr, value: Expr, length: Expr) -> int:
        sock = self.fd(fd)
        level_, name_ = self.value(level) or 0, self.value(name) or 0
        if (level_, name_) == (socket.IPPROTO_TCP, K.TCP_INFO):
            if isinstance(value, StructExpr):
                self.check_tcp_info(self.info_of(sock), value)
            return 0
        actual = sock.getsockopt(level_, name_)
        if isinstance(value, ListExpr):
            expected = self.value(value)
            if expected is not None and expected != actual:
                raise self.fail(f"getsockopt: expected value {expected} but got {actual}")
        return 0

    def sys_bind(self, fd: Expr, addr: Expr, addrlen: Expr) -> int:
        self.fd(fd).bind((str(self.local), self.config.bind_port))
        return 0

    def sys_listen(self, fd: Expr, backlog: Expr) -> int:
        self.fd(fd).listen(self.value(backlog) or 0)
        self.flow = None
        return 0

    def sys_accept(self, fd: Expr, addr: Expr, addrlen: Expr) -> socket.socket:
        child, _ = self.fd(fd).accept()
        return child

    def start_active(self, sock: socket.socket) -> None:
        """A connect or a first sendto: this socket becomes the socket under test."""
        if tcpinfo.read(sock).state == TCP_CLOSE:
            self.flow = Flow(False, self.config.connect_port, None, sock)

    def sys_connect(self, fd: Expr, addr: Expr, addrlen: Expr) -> int:
        sock = self.fd(fd)
        if isinstance(addr, Name) and addr.name == "AF_UNSPEC":
            return disconnect(sock)
        self.start_active(sock)
        sock.connect((str(self.remote), self.config.connect_port))
        return 0

    def sys_sendto(
        self, fd: Expr, buf: Expr, length: Expr, flags: Expr, addr: Expr, addrlen: Expr
    ) -> int:
        sock = self.fd(fd)
        bits = self.value(flags) or 0
        if bits & K.MSG_FASTOPEN:
            self.start_active(sock)
        target = (str(self.remote), self.config.connect_port)
        return sock.sendto(bytes(self.value(length) or 0), bits, target)

    def sys_sendmsg(self, fd: Expr, msg: Expr, flags: Expr) -> int:
        sock = self.fd(fd)
        bits = self.value(flags) or 0
        if bits & K.MSG_FASTOPEN:
            self.start_active(sock)
        target = (str(self.remote), self.config.connect_port)
        buffers = [bytes(n) for n in self.iov_lengths(msg)]
        return sock.sendmsg(buffers, [], bits, target)

    def sys_send(self, fd: Expr, buf: Expr, length: Expr, flags: Expr) -> int:
        return self.fd(fd).send(bytes(self.value(length) or 0), self.value(flags) or 0)

    def sys_write(self, fd: Expr, buf: Expr, length: Expr) -> int:
        return self.sys_send(fd, buf, length, 0)

    def sys_recv(self, fd: Expr, buf: Expr, length: Expr, flags: Expr) -> int:
        return len(self.fd(fd).recv(self.value(length) or 0, self.value(flags) or 0))

    def sys_read(self, fd: Expr, buf: Expr, length: Expr) -> int:
        return self.sys_recv(fd, buf, length, 0)

    def sys_shutdown(self, fd: Expr, how: Expr) -> int:
        self.fd(fd).shutdown(self.value(how) or 0)
        return 0

    def sys_poll(self, fds: Expr, nfds: Expr, timeout: Expr) -> int:
        """poll() on the namespace's real sockets (in a thread when it may wait)."""
        entries, ms = self.poll_args(fds, nfds, timeout)
        poller = select.poll()
        for number, events, _ in entries:
            if number in self.fds:
                poller.register(self.fds[number].fileno(), events)
        ready = dict(poller.poll(ms))
        got = [
            ready.get(self.fds[number].fileno(), 0) if number in self.fds else select.POLLNVAL
            for number, _, _ in entries
        ]
        self.check_revents(entries, got, self.event)
        return sum(1 for r in got if r)

    def sys_close(self, fd: Expr) -> int:
        number = self.value(fd)
        if number is None or number not in self.fds:
            raise OSError(errno_mod.EBADF, os.strerror(errno_mod.EBADF))
        self.fds.pop(number).close()
        return 0

    # -- %{ }% -------------------------------------------------------------------------------------

    def info_of(self, sock: socket.socket) -> dict[str, int]:
        info = tcpinfo.read(sock)
        return {name: getattr(info, attr) for name, attr in TCPI_FIELDS.items()}

    def tcp_info_fields(self) -> dict[str, int]:
        flow = self.flow
        if flow is not None and flow.sock is None and self.pending is not None:
            self.finish_pending()  # the accept that gives the socket under test
        if flow is None or flow.sock is None:
            raise self.fail(
                "a %{ }% block, but there is no socket under test",
                hint="with the kernel, a passive connection's socket is the one accept() returns",
            )
        return self.info_of(flow.sock)


def _setup(ns: Netns, config: Config, local: IPAddress, remote: IPAddress) -> int:
    """The namespace's TUN device with the local address and the route to the remote one."""
    for name, value in QUIET_SYSCTLS:
        ns.sysctl(name, value)
    tun = open_tun(ns, DEVICE)
    try:
        if local.version == 4:
            ns.sysctl(f"net.ipv6.conf.{DEVICE}.disable_ipv6", "1")
        host = ipaddress.ip_network(remote).prefixlen  # /32 or /128
        route_into(
            ns,
            DEVICE,
            [ipaddress.ip_interface(f"{remote}/{host}")],
            kernel_addresses=[ipaddress.ip_interface(f"{local}/{host}")],
            mtu=config.mtu,
        )
    except BaseException:
        os.close(tun)
        raise
    return tun


def run_kernel(script: Script, config: Config) -> RunResult:
    """Run ``script`` against the kernel of a fresh namespace (``config`` already applied)."""
    local, remote = config.addresses()
    check_addresses(local, remote, script.path)
    try:
        check_support("fastopen packetdrill --stack kernel")
    except NeedsRoot as exc:
        raise NeedsRoot(
            "fastopen packetdrill --stack kernel needs root: it makes a network namespace and "
            "a TUN device",
            hint="run it as root, or use the engine backend (--stack engine)",
        ) from exc
    with Netns("pd") as ns:
        tun = _setup(ns, config, local, remote)
        try:
            runner = KernelRunner(script, config, ns, tun)
            runner.reader.start()
            try:
                return runner.run()
            finally:
                runner.close()
        finally:
            os.close(tun)
