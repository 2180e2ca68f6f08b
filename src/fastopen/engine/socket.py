"""Engine sockets: Linux's non-blocking BSD socket API over the engine, errno for errno.

Every call that Linux would fail raises :class:`EngineError` with Linux's errno (EINPROGRESS,
EAGAIN, EALREADY, EISCONN, ENOTCONN, ECONNREFUSED, ECONNRESET, EPIPE, EOPNOTSUPP, ...), so a
packetdrill script's ``= -1 EINPROGRESS`` maps one to one. Addresses are ``(host, port)`` tuples.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket as _socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NoReturn

from fastopen.constants import (
    MSG_FASTOPEN,
    TCP_FASTOPEN,
    TCP_FASTOPEN_CONNECT,
    TCP_FASTOPEN_KEY,
    TCP_FASTOPEN_NO_COOKIE,
    TCP_INFO,
    TFO_CLIENT_ENABLE,
)
from fastopen.cookies import KeyRing
from fastopen.engine.cache import IPAddress
from fastopen.engine.cc import NAME_MAX, NAMES
from fastopen.engine.context import SocketContext
from fastopen.engine.errqueue import (
    SOF_TIMESTAMPING_MASK,
    SOF_TIMESTAMPING_OPT_ID,
    ErrorQueue,
    Notice,
)
from fastopen.engine.events import Accepted, EngineError, Readable, Writable
from fastopen.engine.fastopen import FastOpenQueue, client_cookie_check, syn_data_space
from fastopen.engine.handshake import MSS_DEFAULT
from fastopen.engine.info import TcpInfo
from fastopen.engine.md5 import (
    TCP_MD5SIG,
    TCP_MD5SIG_EXT,
    Md5Key,
    Md5KeyError,
    parse_md5sig,
    set_key,
)
from fastopen.engine.segmentation import Iov
from fastopen.engine.seq import MASK
from fastopen.engine.states import TcpState
from fastopen.engine.tcb import NAGLE_CORK, NAGLE_OFF, NAGLE_PUSH, Connection
from fastopen.engine.window import RCVBUF_LOCK, SNDBUF_LOCK, SOCK_MIN_RCVBUF, SOCK_MIN_SNDBUF
from fastopen.errors import KeyFormatError
from fastopen.wire import FastOpen

SOL_SOCKET = _socket.SOL_SOCKET
SOL_TCP = _socket.IPPROTO_TCP
SO_REUSEADDR = _socket.SO_REUSEADDR
SO_ERROR = _socket.SO_ERROR
SO_KEEPALIVE = _socket.SO_KEEPALIVE
SO_SNDBUF = _socket.SO_SNDBUF
SO_RCVBUF = _socket.SO_RCVBUF
#: SO_MARK (kept, nothing in the engine routes by it), SO_ZEROCOPY and MSG_ZEROCOPY (Linux 4.14+).
SO_MARK = 36
#: SO_TIMESTAMPING (SO_TIMESTAMPING_OLD; its cmsg is SCM_TIMESTAMPING, the same number).
SO_TIMESTAMPING = 37
SO_ZEROCOPY = 60
MSG_ZEROCOPY = 0x4000000
MSG_EOR = _socket.MSG_EOR
MSG_MORE = _socket.MSG_MORE
MSG_OOB = _socket.MSG_OOB
TCP_NODELAY = _socket.TCP_NODELAY
TCP_CORK = _socket.TCP_CORK
#: TCP_NOTSENT_LOWAT (Linux 3.12+): the most unsent data a writable socket has.
TCP_NOTSENT_LOWAT = 25
TCP_SYNCNT = _socket.TCP_SYNCNT
TCP_MAXSEG = _socket.TCP_MAXSEG
TCP_QUICKACK = _socket.TCP_QUICKACK
TCP_KEEPIDLE = _socket.TCP_KEEPIDLE
TCP_KEEPINTVL = _socket.TCP_KEEPINTVL
TCP_KEEPCNT = _socket.TCP_KEEPCNT
TCP_USER_TIMEOUT = _socket.TCP_USER_TIMEOUT
#: TCP_INQ (Linux 4.18+): recvmsg adds a TCP_CM_INQ cmsg (the same number) with the bytes left.
TCP_INQ = 36
TCP_CONGESTION = _socket.TCP_CONGESTION
#: Linux MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL (seconds), MAX_TCP_KEEPCNT; TCP_MIN_MSS and
#: MAX_TCP_WINDOW bound TCP_MAXSEG.
MAX_KEEPIDLE = 32767
MAX_KEEPINTVL = 32767
MAX_KEEPCNT = 127
MIN_USER_MSS, MAX_USER_MSS = 88, 32767
#: Linux's poll bits (tcp_poll), as <poll.h> has them.
POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
POLLRDNORM, POLLWRNORM, POLLRDHUP = 0x40, 0x100, 0x2000
#: An address of family AF_UNSPEC, as sendto(MSG_FASTOPEN) may be given one (Linux refuses it).
AF_UNSPEC_ADDRESS = ("", -1)
#: Linux MAX_TCP_SYNCNT: the most TCP_SYNCNT takes.
MAX_SYNCNT = 127
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2
#: Linux's TCP ioctls: SIOCINQ (FIONREAD), SIOCOUTQ (TIOCOUTQ), SIOCOUTQNSD.
SIOCINQ, SIOCOUTQ, SIOCOUTQNSD = 0x541B, 0x5411, 0x894B
#: SIOCATMARK: 1 when the next byte to read is the urgent one.
SIOCATMARK = 0x8905
SO_OOBINLINE = _socket.SO_OOBINLINE
AF_INET, AF_INET6 = _socket.AF_INET, _socket.AF_INET6

SockAddr = tuple[str, int]
#: (level, name) of IP_RECVERR and IPV6_RECVERR.
_RECVERR = frozenset(((_socket.IPPROTO_IP, 11), (_socket.IPPROTO_IPV6, 25)))
#: (level, name) of IP_FREEBIND and IPV6_FREEBIND.
IP_FREEBIND = 15
#: IP_TOS and IP_MTU_DISCOVER (level SOL_IP), and the modes of the latter (linux/in.h).
IP_TOS, IP_MTU_DISCOVER = 1, 10
IP_PMTUDISC_DONT, IP_PMTUDISC_WANT, IP_PMTUDISC_DO = 0, 1, 2
IP_PMTUDISC_PROBE, IP_PMTUDISC_INTERFACE, IP_PMTUDISC_OMIT = 3, 4, 5
_FREEBIND = frozenset(((_socket.IPPROTO_IP, IP_FREEBIND), (_socket.IPPROTO_IPV6, 78)))
_KEEPALIVE_LIMITS = {
    TCP_KEEPIDLE: MAX_KEEPIDLE,
    TCP_KEEPINTVL: MAX_KEEPINTVL,
    TCP_KEEPCNT: MAX_KEEPCNT,
}


@functools.lru_cache(maxsize=1024)
def _ip_address(text: str) -> IPAddress:
    """An address from its text (cached: applications connect to the same few addresses)."""
    return ipaddress.ip_address(text)


def _fail(code: int) -> EngineError:
    return EngineError(code)


@dataclass(frozen=True, slots=True)
class SocketOptions:
    """The options of a socket that its children take from their listener (Linux
    sk_clone_lock copies the socket): one immutable value, replaced whole when setsockopt
    changes one, so that every socket left at the defaults shares :data:`DEFAULT_OPTIONS` and
    a listener's children share its (an idle connection's socket holds one reference)."""

    #: SO_KEEPALIVE and its TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (0: the host's).
    keepalive: bool = False
    keepidle: int = 0
    keepintvl: int = 0
    keepcnt: int = 0
    #: TCP_MAXSEG (Linux rx_opt.user_mss; 0: none).
    user_mss: int = 0
    #: TCP_NOTSENT_LOWAT (Linux tp->notsent_lowat; 0: the host's tcp_notsent_lowat).
    notsent_lowat: int = 0
    #: IP_RECVERR / IPV6_RECVERR: ICMP errors on a connected socket are reported at once.
    recverr: bool = False
    #: SO_ZEROCOPY, SO_MARK, TCP_INQ (Linux tp->recvmsg_inq).
    zerocopy: bool = False
    mark: int = 0
    inq: bool = False
    #: TCP_SYNCNT (0: the host's syn_retries, or synack_retries for a listener's children).
    syn_retries: int = 0
    #: TCP_USER_TIMEOUT, seconds (Linux icsk_user_timeout, set in ms; 0: none): how long
    #: data may stay unacknowledged before the connection gives up with ETIMEDOUT.
    user_timeout: float = 0.0
    #: Linux sk_userlocks: SO_SNDBUF / SO_RCVBUF set the buffer (no autotuning from then on).
    buf_locks: int = 0
    #: TCP_MD5SIG / TCP_MD5SIG_EXT: the MD5 keys by peer (Linux tp->md5sig_info), :mod:`.md5`.
    md5_keys: tuple[Md5Key, ...] = ()
    #: SO_OOBINLINE (Linux SOCK_URGINLINE): urgent data stays in the stream (:mod:`.urgent`).
    oobinline: bool = False
    #: IP_FREEBIND / IPV6_FREEBIND: bind() takes an address the host does not have.
    freebind: bool = False
    #: IP_TOS: the DSCP bits of the IPv4 TOS byte (Linux inet->tos; its ECN bits are TCP's).
    tos: int = 0
    #: IP_MTU_DISCOVER (Linux inet->pmtudisc; WANT, as ip_no_pmtu_disc=0 gives new sockets).
    pmtudisc: int = IP_PMTUDISC_WANT

    @property
    def dont_fragment(self) -> bool:
        """Linux ip_dont_fragment: IPv4 packets go with DF for IP_PMTUDISC_DO, and for WANT
        (the route's MTU is never locked here)."""
        return self.pmtudisc in (IP_PMTUDISC_WANT, IP_PMTUDISC_DO)

    def ip_header(self, version: int) -> tuple[int, bool]:
        """The ``tos`` and ``df`` of a segment this socket sends over IP ``version``
        (:class:`~fastopen.wire.TcpSegment`; IP_TOS is IPv4's)."""
        return (self.tos if version == 4 else 0), self.dont_fragment

    @property
    def accepts_pmtu(self) -> bool:
        """A path MTU learnt from ICMP lowers this socket's MSS (Linux tcp_v4_mtu_reduced:
        not for IP_PMTUDISC_DONT, nor where ip_sk_accept_pmtu is false, INTERFACE and OMIT)."""
        return self.pmtudisc not in (
            IP_PMTUDISC_DONT,
            IP_PMTUDISC_INTERFACE,
            IP_PMTUDISC_OMIT,
        )


DEFAULT_OPTIONS = SocketOptions()


class ListenQueue:
    """What a listening socket keeps (Linux struct request_sock_queue, icsk_accept_queue, with
    sk_max_ack_backlog and the TFO context): the backlog, the children accept() takes (oldest
    first), the SYN queue (Linux reqsk_queue_len / _young: embryonic children, and those
    whose SYN-ACK was never retransmitted), when it last overflowed (SYN cookies), the fast
    open queue and TCP_FASTOPEN_KEY. Made when a socket first needs it (listen, TCP_FASTOPEN,
    TCP_FASTOPEN_KEY): a connection's socket holds none."""

    __slots__ = (
        "accepted",
        "backlog",
        "fastopen",
        "keys",
        "last_overflow",
        "syn_qlen",
        "syn_young",
    )

    def __init__(self) -> None:
        self.backlog = 0
        self.accepted: deque[EngineSocket] = deque()
        self.syn_qlen = 0
        self.syn_young = 0
        self.last_overflow: float | None = None
        self.fastopen = FastOpenQueue()
        self.keys: KeyRing | None = None


class EngineSocket:
    """One TCP socket of a :class:`~fastopen.engine.host.Host` (always non-blocking); it sees
    its host only through the narrow :class:`~fastopen.engine.context.SocketContext`."""

    __slots__ = (
        "_error_reported",
        "_listen",
        "bound",
        "closed",
        "congestion",
        "conn",
        "connecting",
        "ctx",
        "defer_connect",
        "errqueue",
        "family",
        "fastopen_connect",
        "fastopen_no_cookie",
        "listening",
        "nonagle",
        "options",
        "rcvbuf",
        "reuseaddr",
        "sndbuf",
        "write_pending",
    )

    def __init__(self, ctx: SocketContext, family: int = AF_INET) -> None:
        if family not in (AF_INET, AF_INET6):
            raise _fail(errno.EAFNOSUPPORT)
        self.ctx = ctx
        self.family = family
        #: TCP_CONGESTION: the congestion control (Linux tcp_assign_congestion_control: the
        #: host's tcp_congestion_control when the socket is made)
        self.congestion = ctx.settings.congestion_control
        if self.congestion not in NAMES:
            raise EngineError(
                errno.ENOENT,
                hint=f"tcp_congestion_control {self.congestion!r}: the engine has "
                + ", ".join(NAMES),
            )
        self.conn: Connection | None = None
        self.bound: tuple[IPAddress | None, int] | None = None
        self.listening = False
        self._listen: ListenQueue | None = None  # made when first used (a listener's)
        self.fastopen_no_cookie = False
        # client side
        self.fastopen_connect = False
        self.defer_connect = False
        #: Linux tp->nonagle: NAGLE_OFF (TCP_NODELAY), NAGLE_CORK (TCP_CORK), NAGLE_PUSH (push
        #: what waits now, until the next write starts a new skb: tcp_skb_entail). Not in
        #: SocketOptions: a write clears NAGLE_PUSH.
        self.nonagle = 0
        self.reuseaddr = False
        self.options = DEFAULT_OPTIONS
        #: the MSG_ZEROCOPY notifications (made at the first such send)
        self.errqueue: ErrorQueue | None = None
        #: Linux sk_write_pending: a runtime whose application is blocked in a write waiting for
        #: the connection counts itself here; the ACK of the SYN-ACK then waits for its data.
        self.write_pending = 0
        self.closed = False
        #: Linux sk_rcvbuf and sk_sndbuf (tcp_rmem[1], tcp_wmem[1]; autotuned unless SO_RCVBUF
        #: or SO_SNDBUF set them: ``options.buf_locks``)
        settings = ctx.settings
        self.rcvbuf = settings.rmem
        self.sndbuf = settings.wmem
        #: Linux SS_CONNECTING: a connect (or MSG_FASTOPEN) started and no later connect saw it
        #: complete; such a socket takes one more connect (0) or MSG_FASTOPEN (a plain send).
        self.connecting = False
        self._error_reported = False

    def __repr__(self) -> str:
        state = self.state.name
        if self.conn is not None:
            c = self.conn
            return f"<EngineSocket {state} {c.local}:{c.lport} -> {c.remote}:{c.rport}>"
        return f"<EngineSocket {state} {self.bound}>"

    @property
    def listen_queue(self) -> ListenQueue:
        """A listener's queues and backlog (made at the first use)."""
        queue = self._listen
        if queue is None:
            queue = self._listen = ListenQueue()
        return queue

    @property
    def accept_queue(self) -> deque[EngineSocket]:
        """The children accept() takes, oldest first (Linux icsk_accept_queue)."""
        return self.listen_queue.accepted

    @property
    def fastopen_queue(self) -> FastOpenQueue:
        """A listener's pending fast open requests (Linux ``struct fastopen_queue``)."""
        return self.listen_queue.fastopen

    # -- state -------------------------------------------------------------------------------------

    @property
    def state(self) -> TcpState:
        if self.conn is not None:
            return self.conn.state
        return TcpState.LISTEN if self.listening else TcpState.CLOSED

    def _check_open(self) -> None:
        if self.closed:
            raise _fail(errno.EBADF)

    def _take_error(self) -> int | None:
        """The pending error (sk_err), reported once as Linux does."""
        conn = self.conn
        if conn is not None and conn.error is not None and not self._error_reported:
            self._error_reported = True
            return conn.error
        return None

    # -- options -----------------------------------------------------------------------------------

    def setsockopt(
        self, level: int, name: int, value: int | bytes, now: float | None = None
    ) -> None:
        """Set an option; ``now`` is when, for the options that send at once (TCP_NODELAY
        and clearing TCP_CORK push what Nagle or the cork held back: without ``now`` it goes
        with the connection's next output)."""
        self._check_open()
        settings = self.ctx.settings
        st = self.state
        if (level, name) in _RECVERR and isinstance(value, int):
            self.options = replace(self.options, recverr=bool(value))
            return
        if (level, name) in _FREEBIND and isinstance(value, int):
            self.options = replace(self.options, freebind=bool(value))
            return
        if level == _socket.IPPROTO_IP and name in (IP_TOS, IP_MTU_DISCOVER):
            if not isinstance(value, int):
                raise _fail(errno.EINVAL)
            if name == IP_TOS:  # Linux __ip_sock_set_tos: a stream keeps TCP's ECN bits
                self.options = replace(self.options, tos=value & 0xFC)
            elif not IP_PMTUDISC_DONT <= value <= IP_PMTUDISC_OMIT:
                raise _fail(errno.EINVAL)
            else:
                self.options = replace(self.options, pmtudisc=value)
            return
        if level == SOL_SOCKET:
            if name == SO_REUSEADDR:
                self.reuseaddr = bool(value)
                return
            if name == SO_KEEPALIVE and isinstance(value, int):
                self.options = replace(self.options, keepalive=bool(value))
                if self.conn is not None and now is not None:
                    self.conn.keepalive_changed(now)
                return
            if name in (SO_SNDBUF, SO_RCVBUF) and isinstance(value, int):
                self._set_buffer(name, value)
                return
            if name == SO_TIMESTAMPING and isinstance(value, int):
                self._set_timestamping(value)
                return
            if name == SO_ZEROCOPY and isinstance(value, int):
                if value not in (0, 1):
                    raise _fail(errno.EINVAL)
                self.options = replace(self.options, zerocopy=bool(value))
                return
            if name == SO_MARK and isinstance(value, int):
                self.options = replace(self.options, mark=value & MASK)
                return
            if name == SO_OOBINLINE and isinstance(value, int):
                self.options = replace(self.options, oobinline=bool(value))
                return
            raise _fail(errno.ENOPROTOOPT)
        if level != SOL_TCP:
            raise _fail(errno.ENOPROTOOPT)
        if name in _KEEPALIVE_LIMITS and isinstance(value, int):
            if not 1 <= value <= _KEEPALIVE_LIMITS[name]:
                raise _fail(errno.EINVAL)
            options = self.options
            if name == TCP_KEEPIDLE:
                self.options = replace(options, keepidle=value)
            elif name == TCP_KEEPINTVL:
                self.options = replace(options, keepintvl=value)
            else:
                self.options = replace(options, keepcnt=value)
            if self.conn is not None and now is not None:
                self.conn.keepalive_changed(now)
            return
        if name == TCP_QUICKACK and isinstance(value, int):
            if self.conn is not None and now is not None:
                self.conn.set_quickack(bool(value & 1), now)
            return
        if name == TCP_INQ and isinstance(value, int):
            if value not in (0, 1):
                raise _fail(errno.EINVAL)
            self.options = replace(self.options, inq=bool(value))
            return
        if name == TCP_MAXSEG and isinstance(value, int):
            # Linux do_tcp_setsockopt: 0 clears it; else TCP_MIN_MSS..MAX_TCP_WINDOW
            if value and not MIN_USER_MSS <= value <= MAX_USER_MSS:
                raise _fail(errno.EINVAL)
            self.options = replace(self.options, user_mss=value)
            return
        if name in (TCP_MD5SIG, TCP_MD5SIG_EXT):
            if not isinstance(value, bytes):
                raise _fail(errno.EINVAL)
            try:  # Linux tcp_v4_parse_md5_keys, tcp_v6_parse_md5_keys
                network, key = parse_md5sig(value, self.family, name == TCP_MD5SIG_EXT)
            except Md5KeyError:
                raise _fail(errno.EINVAL) from None
            keys = set_key(self.options.md5_keys, network, key)
            self.options = replace(self.options, md5_keys=keys)
            return
        if name == TCP_FASTOPEN_KEY:
            if not isinstance(value, bytes):
                raise _fail(errno.EINVAL)
            try:
                self.listen_queue.keys = KeyRing.from_raw(value)
            except KeyFormatError:
                raise _fail(errno.EINVAL) from None
            return
        if name == TCP_CONGESTION:
            self._set_congestion(value, now)
            return
        if not isinstance(value, int):
            raise _fail(errno.EINVAL)
        if name == TCP_NODELAY:  # Linux __tcp_sock_set_nodelay
            if value:
                self.nonagle |= NAGLE_OFF | NAGLE_PUSH
                self._push_pending(now)
            else:
                self.nonagle &= ~NAGLE_OFF
            return
        if name == TCP_CORK:  # Linux __tcp_sock_set_cork: uncorking pushes what waits
            if value:
                self.nonagle |= NAGLE_CORK
            else:
                self.nonagle &= ~NAGLE_CORK
                if self.nonagle & NAGLE_OFF:
                    self.nonagle |= NAGLE_PUSH
                self._push_pending(now)
            return
        if name == TCP_NOTSENT_LOWAT:  # Linux do_tcp_setsockopt, then sk_write_space
            self.options = replace(self.options, notsent_lowat=value & MASK)
            conn = self.conn
            if conn is not None and conn.want_write and conn.writable():
                conn.want_write = False
                self.ctx.emit(Writable(self))
            return
        if name == TCP_USER_TIMEOUT:  # Linux tcp_sock_set_user_timeout (any state)
            if value < 0:
                raise _fail(errno.EINVAL)
            self.options = replace(self.options, user_timeout=value / 1000)
            return
        if name == TCP_SYNCNT:
            if not 1 <= value <= MAX_SYNCNT:
                raise _fail(errno.EINVAL)
            self.options = replace(self.options, syn_retries=value)
            return
        if name == TCP_FASTOPEN:
            if value < 0 or st not in (TcpState.CLOSED, TcpState.LISTEN):
                raise _fail(errno.EINVAL)
            self.fastopen_queue.max_qlen = min(value, settings.somaxconn)
            return
        if name == TCP_FASTOPEN_CONNECT:
            if value not in (0, 1):
                raise _fail(errno.EINVAL)
            if not settings.tcp_fastopen & TFO_CLIENT_ENABLE:
                raise _fail(errno.EOPNOTSUPP)
            if st is not TcpState.CLOSED:
                raise _fail(errno.EINVAL)
            self.fastopen_connect = bool(value)
            return
        if name == TCP_FASTOPEN_NO_COOKIE:
            if value not in (0, 1) or st not in (TcpState.CLOSED, TcpState.LISTEN):
                raise _fail(errno.EINVAL)
            self.fastopen_no_cookie = bool(value)
            return
        raise _fail(errno.ENOPROTOOPT)

    def _set_timestamping(self, flags: int) -> None:
        """SO_TIMESTAMPING (Linux sock_set_timestamping): EINVAL for unknown flags, and for
        OPT_ID on a TCP socket closed or listening."""
        if flags & ~SOF_TIMESTAMPING_MASK:
            raise _fail(errno.EINVAL)
        conn = self.conn
        opt_id = flags & SOF_TIMESTAMPING_OPT_ID
        if opt_id and (conn is None or self.listening or conn.state is TcpState.CLOSED):
            raise _fail(errno.EINVAL)
        if not flags and self.errqueue is None:
            return
        una, write_seq = (conn.snd_una, conn.write_seq()) if conn is not None else (0, 0)
        self.error_queue().set_timestamping(flags, una, write_seq)

    def _push_pending(self, now: float | None) -> None:
        """Linux tcp_push_pending_frames: what waits goes, as far as Nagle and the windows let
        (a socket option set without ``now`` leaves it to the connection's next output)."""
        conn = self.conn
        if conn is not None and now is not None:
            conn.push_pending(now)

    def _set_buffer(self, name: int, value: int) -> None:
        """SO_SNDBUF / SO_RCVBUF as Linux sock_setsockopt: at most net.core.wmem_max /
        rmem_max (a negative value as the most), doubled for the kernel's overhead, at least
        SOCK_MIN_SNDBUF / SOCK_MIN_RCVBUF; the buffer is locked (no autotuning from then on)."""
        settings = self.ctx.settings
        if name == SO_SNDBUF:
            most = settings.core_wmem_max
            value = most if value < 0 else min(value, most)
            self.sndbuf = max(2 * value, SOCK_MIN_SNDBUF)
            locks = SNDBUF_LOCK
        else:
            most = settings.core_rmem_max
            value = most if value < 0 else min(value, most)
            self.rcvbuf = max(2 * value, SOCK_MIN_RCVBUF)
            locks = RCVBUF_LOCK
        self.options = replace(self.options, buf_locks=self.options.buf_locks | locks)

    def getsockopt(self, level: int, name: int, now: float | None = None) -> int | bytes | TcpInfo:
        """An option's value; TCP_INFO is a snapshot at ``now``, which it needs (its
        tcpi_last_* and chronograph fields are times since events)."""
        self._check_open()
        options = self.options
        if (level, name) in _RECVERR:
            return int(options.recverr)
        if level == _socket.IPPROTO_IP and name == IP_TOS:
            return options.tos  # Linux adds the ECN bits of the last segment sent
        if level == _socket.IPPROTO_IP and name == IP_MTU_DISCOVER:
            return options.pmtudisc
        if level == SOL_SOCKET:
            if name == SO_REUSEADDR:
                return int(self.reuseaddr)
            if name == SO_ERROR:  # Linux: sk_err, else the soft error (both read once)
                err = self._take_error()
                conn = self.conn
                if err is None and conn is not None and conn.soft_error is not None:
                    err, conn.soft_error = conn.soft_error, None
                return err or 0
            if name == SO_KEEPALIVE:
                return int(options.keepalive)
            if name == SO_SNDBUF:
                return self.sndbuf
            if name == SO_RCVBUF:
                return self.rcvbuf
            if name == SO_ZEROCOPY:
                return int(options.zerocopy)
            if name == SO_MARK:
                return options.mark
            if name == SO_OOBINLINE:
                return int(options.oobinline)
            raise _fail(errno.ENOPROTOOPT)
        if level != SOL_TCP:
            raise _fail(errno.ENOPROTOOPT)
        if name == TCP_INFO:
            if now is None:
                raise TypeError("getsockopt(TCP_INFO) needs now: tcp_info is a snapshot at a time")
            return self.tcp_info(now)
        if name == TCP_NODELAY:
            return int(bool(self.nonagle & NAGLE_OFF))
        if name == TCP_CORK:
            return int(bool(self.nonagle & NAGLE_CORK))
        if name == TCP_NOTSENT_LOWAT:
            return options.notsent_lowat
        if name == TCP_INQ:
            return int(options.inq)
        if name == TCP_SYNCNT:
            return options.syn_retries or self.ctx.settings.syn_retries
        if name == TCP_USER_TIMEOUT:
            return round(options.user_timeout * 1000)
        if name in _KEEPALIVE_LIMITS:
            return self.keepalive_setting(name)
        if name == TCP_MAXSEG:
            conn = self.conn
            if conn is not None and conn.state not in (TcpState.CLOSED, TcpState.LISTEN):
                return conn.snd_mss
            return options.user_mss or MSS_DEFAULT
        if name == TCP_FASTOPEN:
            return self.fastopen_queue.max_qlen
        if name == TCP_FASTOPEN_CONNECT:
            return int(self.fastopen_connect)
        if name == TCP_FASTOPEN_NO_COOKIE:
            return int(self.fastopen_no_cookie)
        if name == TCP_FASTOPEN_KEY:
            ring = (self._listen and self._listen.keys) or self.ctx.settings.keys
            return ring.to_raw()
        if name == TCP_CONGESTION:  # what a TCP_CA_NAME_MAX buffer gets: the name, NUL-padded
            return self.congestion.encode().ljust(NAME_MAX, b"\0")
        raise _fail(errno.ENOPROTOOPT)

    def _set_congestion(self, value: int | bytes, now: float | None) -> None:
        """Linux TCP_CONGESTION: a name (up to TCP_CA_NAME_MAX - 1 bytes, to its NUL); ENOENT
        for an algorithm the engine has not. A connection gets the new algorithm fresh
        (tcp_reinit_congestion_control: its window stays, an established one's algorithm is
        initialised, at ``now`` or, without it, when data last left); the same name changes
        nothing."""
        if not isinstance(value, bytes) or not value:
            raise _fail(errno.EINVAL)
        name = value[: NAME_MAX - 1].split(b"\0", 1)[0].decode("ascii", "replace")
        if name not in NAMES:
            raise EngineError(errno.ENOENT, hint="the engine has " + ", ".join(NAMES))
        if name == self.congestion:
            return
        self.congestion = name
        conn = self.conn
        if conn is not None:
            conn.recovery.cc = self.ctx.congestion_control(name)
            if conn.state not in (TcpState.CLOSED, TcpState.LISTEN):
                conn.init_congestion_control(now if now is not None else conn.recovery.lsndtime)

    # -- addresses ---------------------------------------------------------------------------------

    def _parse_addr(self, addr: SockAddr) -> tuple[IPAddress | None, int]:
        host, port = addr
        if not 0 <= port <= 0xFFFF:
            raise _fail(errno.EINVAL)
        if host in ("", "0.0.0.0", "::"):
            return None, port
        try:
            ip = _ip_address(host)
        except ValueError:
            raise _fail(errno.EINVAL) from None
        if (ip.version == 4) != (self.family == AF_INET):
            raise _fail(errno.EAFNOSUPPORT)
        return ip, port

    def bind(self, addr: SockAddr) -> None:
        self._check_open()
        if self.bound is not None or self.conn is not None:
            raise _fail(errno.EINVAL)
        ip, port = self._parse_addr(addr)
        if ip is not None and not self.options.freebind and not self.ctx.has_address(ip):
            raise _fail(errno.EADDRNOTAVAIL)  # Linux inet_addr_valid_or_nonlocal
        self.bound = self.ctx.bind_port(self, ip, port)

    def getsockname(self) -> SockAddr:
        if self.conn is not None:
            return str(self.conn.local), self.conn.lport
        if self.bound is not None:
            ip, port = self.bound
            return (str(ip) if ip is not None else self._any()), port
        return self._any(), 0

    def _any(self) -> str:
        return "0.0.0.0" if self.family == AF_INET else "::"

    def getpeername(self) -> SockAddr:
        conn = self.conn
        if conn is None or conn.state in (TcpState.CLOSED, TcpState.LISTEN):
            raise _fail(errno.ENOTCONN)
        return str(conn.remote), conn.rport

    # -- passive open ------------------------------------------------------------------------------

    def listen(self, backlog: int) -> None:
        self._check_open()
        if self.conn is not None:
            raise _fail(errno.EINVAL)
        if self.bound is None:
            self.bound = self.ctx.bind_port(self, None, 0)
        queue = self.listen_queue
        queue.backlog = max(0, min(backlog, self.ctx.settings.somaxconn))
        if not self.listening:
            self.ctx.start_listening(self)
            queue.fastopen.listen(self.ctx.settings, queue.backlog)
        self.listening = True

    def accept(self, now: float) -> tuple[EngineSocket, SockAddr]:
        self._check_open()
        if not self.listening:
            raise _fail(errno.EINVAL)
        if not self.accept_queue:
            raise _fail(errno.EAGAIN)
        child = self.accept_queue.popleft()
        conn = child.conn
        assert conn is not None
        return child, (str(conn.remote), conn.rport)

    def child_ready(self, child: EngineSocket) -> None:
        """A child of this listener is established (or a TFO child was born): accept() takes it."""
        self.accept_queue.append(child)
        self.ctx.emit(Accepted(self))

    # -- active open -------------------------------------------------------------------------------

    def _new_connection(self, addr: SockAddr, now: float) -> Connection:
        ip, port = self._parse_addr(addr)
        if ip is None or port == 0:
            raise _fail(errno.ECONNREFUSED if ip is not None else errno.EINVAL)
        conn = self.ctx.new_connection(self, self.bound, ip, port, now)
        user_mss = self.options.user_mss
        if user_mss:
            conn.clamp_mss(user_mss)
        self.conn = conn
        self._error_reported = False
        return conn

    def _fastopen_option(self, conn: Connection, now: float) -> tuple[bool, FastOpen | None]:
        """Linux tcp_fastopen_cookie_check: (data may ride in the SYN, the option to send)."""
        ctx = self.ctx
        path = (conn.local, conn.remote, conn.rport)
        check = client_cookie_check(
            ctx.settings, ctx.cookie_cache, ctx.blackhole, self.fastopen_no_cookie, path, now
        )
        conn.fo_blackhole_check = check.marked
        conn.fo_cookie = check.cookie
        conn.fastopen_client_fail = check.fail
        return check.usable, check.option

    def connect(self, addr: SockAddr, now: float) -> None:
        """Non-blocking connect: raises EINPROGRESS (or returns at once for a deferred TFO one)."""
        self._check_open()
        if self.listening:
            raise _fail(errno.EISCONN)
        conn = self.conn
        if conn is not None and conn.state is not TcpState.CLOSED:
            if self.defer_connect:
                raise _fail(errno.EISCONN)
            self._connected_again()
            return
        self.connecting = False
        if conn is not None and conn.error is not None and not self._error_reported:
            self._error_reported = True
            raise _fail(conn.error)
        conn = self._new_connection(addr, now)
        self.connecting = True
        if self.fastopen_connect:
            usable, option = self._fastopen_option(conn, now)
            if usable:
                conn.defer_connect()
                self.defer_connect = True
                return
            conn.open_active(now, b"", option)
        else:
            conn.open_active(now, b"", None)
        raise _fail(errno.EINPROGRESS)

    def _connected_again(self) -> None:
        """Linux __inet_stream_connect on a socket with a connection: EALREADY while the
        handshake runs, EISCONN once connected; the first call after an asynchronous connect
        completed returns 0 (SS_CONNECTING becomes SS_CONNECTED)."""
        conn = self.conn
        assert conn is not None
        if not self.connecting:
            raise _fail(errno.EISCONN)
        if conn.state is TcpState.SYN_SENT or conn.state is TcpState.SYN_RECEIVED:
            raise _fail(errno.EALREADY)
        self.connecting = False

    def disconnect(self, now: float) -> None:
        """connect(AF_UNSPEC) (Linux tcp_disconnect): the connection is dropped, with a RST when
        one is owed, and the socket can connect again; a listener stops listening."""
        self._check_open()
        if self.listening:
            self.ctx.stop_listening(self, now)
            self.listening = False
        conn = self.conn
        if conn is not None and conn.state is not TcpState.CLOSED:
            conn.disconnect(now)
        self.conn = None
        self.defer_connect = self.connecting = False

    # -- data --------------------------------------------------------------------------------------

    def sendto(self, data: bytes, flags: int, addr: SockAddr | None, now: float) -> int:
        """send/sendto with their flags: MSG_FASTOPEN, MSG_MORE (more data follows: this send
        is corked), MSG_EOR (the data ends a record: no segment joins it to what follows),
        and MSG_ZEROCOPY on a socket with SO_ZEROCOPY (a notification on the error queue once
        the data is acknowledged; its pages are the skbs' fragments, see :meth:`sendmsg`)."""
        return self.sendmsg((data,), flags, addr, now)

    def sendmsg(
        self, buffers: Sequence[bytes], flags: int, addr: SockAddr | None, now: float
    ) -> int:
        """sendmsg() of the msg_iov ``buffers``: sendto of their bytes, one after the other.
        With MSG_ZEROCOPY on a socket with SO_ZEROCOPY the buffers are not copied but pinned
        (Linux skb_zerocopy_iter_stream): each page of each buffer is a fragment of an skb,
        which holds at most 17 (MAX_SKB_FRAGS); one out of them gets PSH and the data goes on
        in a new skb, and no segment joins data of an skb with zerocopy pages to another's
        (18 buffers of one byte go as segments of 17 and 1, copied as one of 18)."""
        data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
        self._check_open()
        if flags & MSG_FASTOPEN or self.defer_connect:
            sent = self._sendmsg_fastopen(data, addr, now)
        else:
            iov = None if len(buffers) == 1 else [len(buf) for buf in buffers]
            sent = self.send(data, now, flags, iov)
        if flags & MSG_EOR and sent > 0 and self.conn is not None:
            self.conn.mark_eor()
        if flags & MSG_ZEROCOPY and self.options.zerocopy and sent > 0 and self.conn is not None:
            self.error_queue().zerocopy_sent(self.conn.write_seq())
        return sent

    def error_queue(self) -> ErrorQueue:
        """The socket's error queue, made when first needed."""
        if self.errqueue is None:
            self.errqueue = ErrorQueue()
        return self.errqueue

    def send_unreadable(self, flags: int, addr: SockAddr | None, now: float) -> NoReturn:
        """A send from a buffer the kernel cannot read (a NULL pointer with a length): always
        an error. What the socket's state says comes first (EPIPE, EAGAIN...); then the copy
        faults, EFAULT with nothing queued (tcp_sendmsg_locked). A Fast Open send
        (MSG_FASTOPEN, or the first after a deferred TCP_FASTOPEN_CONNECT) sends its SYN all
        the same, without data and with a cookie request instead of the cookie
        (tcp_send_syn_data's fallback), and gives EINPROGRESS (measured on Linux 6.18)."""
        self._check_open()
        if flags & MSG_FASTOPEN or self.defer_connect:
            self._sendmsg_fastopen(b"", addr, now, unreadable=True)
        else:
            self.send(b"", now, flags)
        raise _fail(errno.EFAULT)

    def recv_error(self) -> Notice:
        """recvmsg(MSG_ERRQUEUE): the oldest notice of the error queue (a zerocopy range of
        ids, or a transmit timestamp); EAGAIN when it is empty."""
        self._check_open()
        self.zerocopy_update()
        queue = self.errqueue
        if queue is None or not queue.ready:
            raise _fail(errno.EAGAIN)
        return queue.ready.pop(0)

    def zerocopy_update(self) -> bool:
        """Queue the notifications of the MSG_ZEROCOPY sends acknowledged by now (Linux queues
        each when the ACK frees its buffers, and wakes the socket): True when any was."""
        queue = self.errqueue
        if queue is None or not queue.pending:
            return False
        conn = self.conn
        return queue.zerocopy_acked(None if conn is None or conn.gone() else conn.snd_una)

    def _sendmsg_fastopen(
        self, data: bytes, addr: SockAddr | None, now: float, unreadable: bool = False
    ) -> int:
        """Linux tcp_sendmsg_fastopen: the SYN carries what fits when a cookie is cached (an
        AF_UNSPEC address is refused, as TFO off is); ``unreadable``: see
        :meth:`send_unreadable`."""
        if not self.ctx.settings.tcp_fastopen & TFO_CLIENT_ENABLE or addr == AF_UNSPEC_ADDRESS:
            raise _fail(errno.EOPNOTSUPP)
        conn = self.conn
        if self.defer_connect:
            assert conn is not None
            self.defer_connect = False
            return self._send_syn(conn, data, now, unreadable)
        if self.listening:
            raise _fail(errno.EISCONN)
        if conn is not None and conn.state is not TcpState.CLOSED:
            self._connected_again()
            return self.send(data, now)  # connected by now: an ordinary send
        if addr is None:
            raise _fail(errno.EINVAL)
        self.connecting = False
        conn = self._new_connection(addr, now)
        self.connecting = True
        return self._send_syn(conn, data, now, unreadable)

    def _send_syn(self, conn: Connection, data: bytes, now: float, unreadable: bool = False) -> int:
        """The SYN of a fast open: what of ``data`` fits rides in it (EINPROGRESS when none).
        Data that cannot be read (``unreadable``) sends a plain SYN with a cookie request
        (Linux tcp_send_syn_data: the copy failed, the fallback)."""
        usable, option = self._fastopen_option(conn, now)
        if unreadable and usable and option is not None:
            option = replace(option, cookie=b"")
        ctx = self.ctx
        room = syn_data_space(ctx.settings, ctx.cookie_cache, conn.local, conn.remote, conn.adv_mss)
        payload = data[:room] if usable else b""
        sent = conn.open_active(now, payload, option)
        if sent:
            return sent
        raise _fail(errno.EINPROGRESS)

    def send(
        self,
        data: bytes | memoryview,
        now: float,
        flags: int = 0,
        iov: Sequence[int] | None = None,
    ) -> int:
        """send() of ``data``: what the send buffer and TCP_NOTSENT_LOWAT take (EAGAIN: none);
        of ``flags`` MSG_MORE and MSG_OOB count (Linux tcp_sendmsg_locked), and MSG_ZEROCOPY on
        a socket with SO_ZEROCOPY: the pages of the buffers ``data`` joins, of the lengths
        ``iov`` (one buffer when None), are the skbs' fragments (as :meth:`sendmsg`, which
        takes the notification's id; a send that goes on with the rest of one takes none).
        What is taken is copied (a view's bytes may change after the call)."""
        self._check_open()
        if self.defer_connect:
            return self._sendmsg_fastopen(bytes(data), None, now)
        conn = self.conn
        if conn is None:
            raise _fail(errno.EPIPE)
        err = self._take_error()
        if err is not None:
            raise _fail(err)
        st = conn.state
        if conn.shut_wr:
            raise _fail(errno.EPIPE)
        if (
            st is TcpState.ESTABLISHED
            or st is TcpState.CLOSE_WAIT
            or (st is TcpState.SYN_RECEIVED and conn.tfo_child)
        ):
            if not data:
                return 0
            pages = None
            if flags & MSG_ZEROCOPY and self.options.zerocopy:
                if iov is not None and sum(iov) != len(data):
                    raise ValueError(f"send: buffers of {sum(iov)} bytes for {len(data)}")
                pages = Iov((len(data),) if iov is None else iov)
            more, oob = bool(flags & MSG_MORE), bool(flags & MSG_OOB)
            return conn.send(data, now, more=more, oob=oob, iov=pages)
        if st is TcpState.SYN_SENT or st is TcpState.SYN_RECEIVED:
            raise _fail(errno.EAGAIN)
        raise _fail(errno.EPIPE)

    def recv(self, n: int, now: float, *, splice: bool = False) -> bytes:
        """Up to ``n`` bytes (b"" at the end of the stream); ``splice``: as splice() reads
        (Linux tcp_splice_read), b"" at an urgent mark while data waits behind it."""
        data = self.recv_ready(n, now, splice=splice)
        if data is None:
            raise _fail(errno.EAGAIN)
        return data

    def recv_ready(self, n: int, now: float, *, splice: bool = False) -> bytes | None:
        """:meth:`recv` without EAGAIN: None when nothing is there yet (a runtime's read loop
        ends on it without an exception each time it has drained the socket)."""
        self._check_open()
        conn = self.conn
        if conn is None:
            raise _fail(errno.ENOTCONN)
        if conn.rcv_buf:
            data = conn.recv(n, now, splice)
            if data or splice:
                return data
            # the urgent byte, out of band, was all there was (Linux: the read goes on waiting)
        err = self._take_error()
        if err is not None:
            raise _fail(err)
        if conn.shut_rd or conn.fin_received() or conn.error is not None:
            return b""
        if conn.state is TcpState.CLOSED:
            raise _fail(errno.ENOTCONN)
        return None

    def recv_oob(self, peek: bool = False) -> bytes:
        """recv(MSG_OOB) (Linux tcp_recv_urg): the urgent byte, once (``peek``: it stays);
        EINVAL with SO_OOBINLINE, without urgent data or once it was read; EAGAIN while it is
        still on its way (never blocks); b"" after the end of the stream."""
        self._check_open()
        conn = self.conn
        if conn is None:
            raise _fail(errno.ENOTCONN)
        return conn.recv_urgent(self.options.oobinline, peek)

    def shutdown(self, how: int, now: float) -> None:
        self._check_open()
        conn = self.conn
        if conn is None or conn.state in (TcpState.CLOSED, TcpState.SYN_SENT):
            raise _fail(errno.ENOTCONN)
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise _fail(errno.EINVAL)
        if how in (SHUT_RD, SHUT_RDWR):
            conn.shut_rd = True
        if how in (SHUT_WR, SHUT_RDWR):
            conn.shutdown_write(now)

    def close(self, now: float) -> None:
        """close(): an orderly FIN (RST with unread data); the connection lives on orphaned."""
        if self.closed:
            return
        self.closed = True
        if self.listening:
            self.ctx.stop_listening(self, now)
            self.listening = False
        if self.bound is not None:
            self.ctx.release_port(self)
        conn = self.conn
        if conn is not None and conn.state is not TcpState.CLOSED:
            conn.close(now)

    def error_pending(self) -> None:
        """The connection has a new error to report (Linux sk_error_report)."""
        self._error_reported = False
        self.ctx.emit(Readable(self))
        self.ctx.emit(Writable(self))

    def inherit(self, listener: EngineSocket) -> None:
        """What a child takes from its listener (Linux sk_clone_lock copies the socket): its
        :class:`SocketOptions` (the same value), TCP_NODELAY and TCP_CORK (tp->nonagle),
        TCP_CONGESTION and the buffers."""
        self.options = listener.options
        self.nonagle = listener.nonagle
        self.rcvbuf, self.sndbuf = listener.rcvbuf, listener.sndbuf
        self.congestion = listener.congestion

    def keepalive_setting(self, name: int) -> int:
        """TCP_KEEPIDLE, TCP_KEEPINTVL or TCP_KEEPCNT: the socket's, else the host's."""
        settings, options = self.ctx.settings, self.options
        if name == TCP_KEEPIDLE:
            return options.keepidle or settings.keepalive_time
        if name == TCP_KEEPINTVL:
            return options.keepintvl or settings.keepalive_intvl
        return options.keepcnt or settings.keepalive_probes

    def poll(self) -> int:
        """The poll bits of this socket now, as Linux tcp_poll computes them (POLLIN, POLLOUT,
        POLLERR, POLLHUP, POLLRDHUP and the RDNORM/WRNORM twins)."""
        if self.listening:
            return POLLIN | POLLRDNORM if self.accept_queue else 0
        conn = self.conn
        st = self.state
        mask = 0
        shut_rd = conn is not None and (conn.shut_rd or conn.fin_received() or conn.gone())
        shut_wr = conn is not None and (conn.shut_wr or conn.gone())
        if (shut_rd and shut_wr) or st is TcpState.CLOSED:
            mask |= POLLHUP
        if shut_rd:
            mask |= POLLIN | POLLRDNORM | POLLRDHUP
        connected = st is not TcpState.SYN_SENT and (
            st is not TcpState.SYN_RECEIVED or (conn is not None and conn.tfo_child)
        )
        if connected:
            if conn is not None and conn.rcv_buf:
                mask |= POLLIN | POLLRDNORM
            if shut_wr or conn is None or conn.writable():
                mask |= POLLOUT | POLLWRNORM
        elif st is TcpState.SYN_SENT and self.defer_connect:
            mask |= POLLOUT | POLLWRNORM  # TCP_FASTOPEN_CONNECT: write() sends the SYN
        if conn is not None and conn.error is not None and not self._error_reported:
            mask |= POLLERR
        self.zerocopy_update()
        if self.errqueue is not None and self.errqueue.ready:
            mask |= POLLERR  # Linux tcp_poll: the error queue is not empty
        return mask

    def inq_hint(self) -> int:
        """Linux tcp_inq_hint, the TCP_CM_INQ of a recvmsg on a TCP_INQ socket: the bytes not
        read yet, the FIN's sequence number counted (so 1, not 0, once the stream ended)."""
        conn = self.conn
        if conn is None:
            return 0
        return len(conn.rcv_buf) + int(conn.fin_received())

    def ioctl(self, request: int) -> int:
        """Linux tcp_ioctl: SIOCINQ, the bytes there are to read; SIOCOUTQ, those queued and not
        acknowledged yet; SIOCOUTQNSD, those not sent yet. A listener has none of them (EINVAL);
        during the handshake all are 0."""
        self._check_open()
        if request not in (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD, SIOCATMARK):
            raise _fail(errno.ENOTTY)
        if self.listening:
            raise _fail(errno.EINVAL)
        conn = self.conn
        if request == SIOCATMARK:  # Linux: urg_data && urg_seq == copied_seq
            return int(conn is not None and conn.at_mark())
        if conn is None or conn.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
            return 0
        if request == SIOCINQ:
            return len(conn.rcv_buf)
        return (conn.write_seq() - (conn.snd_una if request == SIOCOUTQ else conn.snd_nxt)) & (
            0xFFFFFFFF
        )

    def tcp_info(self, now: float) -> TcpInfo:
        """What getsockopt(TCP_INFO) shows at ``now`` (a listener or unconnected socket: mostly
        zeros)."""
        if self.conn is not None:
            return self.conn.info(now)
        fields = {name: 0 for name in TcpInfo.__dataclass_fields__}
        fields["tcpi_state"] = int(self.state)
        return TcpInfo(**fields)
