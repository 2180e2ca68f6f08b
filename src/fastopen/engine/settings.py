"""The sysctls of one engine host, typed: what ``net.ipv4.*`` is to one Linux network namespace.

Every field has Linux's name (without ``tcp_``) and Linux 6.x's default; a :class:`Settings` is
mutable, as sysctls are (``host.settings.tcp_fastopen = 0x3`` takes effect on the next input).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TypedDict

from fastopen.cookies import KeyRing
from fastopen.engine.cache import NEGATIVE_TIME
from fastopen.engine.cc import CubicParams


@dataclass(slots=True)
class Settings:
    """One host's TCP settings.

    ``tcp_fastopen`` takes the bits of ``net.ipv4.tcp_fastopen`` (0x1: client, as Linux);
    ``keys`` is ``tcp_fastopen_key`` (random by default); ``blackhole_timeout`` is
    ``tcp_fastopen_blackhole_timeout_sec`` (0, off, as Linux 5.14+); ``syn_linear_timeouts``
    is ``tcp_syn_linear_timeouts`` (6.x: SYNs are retransmitted that many times more at the
    initial RTO before it doubles); ``rmem_min``, ``rmem``, ``rmem_max`` are ``tcp_rmem``
    (a new socket's receive buffer is ``rmem``, autotuning grows it up to ``rmem_max`` when
    ``moderate_rcvbuf``, ``tcp_moderate_rcvbuf``), ``wmem_min``, ``wmem``, ``wmem_max`` are
    ``tcp_wmem`` (the send buffer starts at ``wmem`` and grows with the congestion window up to
    ``wmem_max``); ``core_rmem_max`` and ``core_wmem_max`` are ``net.core.rmem_max`` and
    ``wmem_max`` (the most SO_RCVBUF and SO_SNDBUF take, before Linux doubles them);
    :attr:`wscale` is the window scale offered, from ``rmem_max``; ``somaxconn`` and
    ``max_syn_backlog`` bound the accept and SYN queues; ``syncookies`` is ``tcp_syncookies``
    (1: when the SYN queue is full; 2: always; 0: never); ``min_snd_mss`` the floor of every
    MSS; ``invalid_ratelimit`` (seconds) spaces duplicate and challenge ACKs per socket;
    ``challenge_ack_limit`` is the per-second global challenge ACK budget (Linux 6.x:
    INT_MAX, in effect off); ``ecn`` is ``tcp_ecn`` (2: accept ECN when asked, never ask);
    ``negative_cache_time`` is the FreeBSD-style per-path TFO disable time of the client cache
    (0 turns it off: pure Linux), read when the host is made. ``usec_ts_routes`` are the
    destinations whose route has ``features tcp_usec_ts`` (Linux 6.7+, ``ip route add PREFIX
    ... features tcp_usec_ts``): connections to them count TS values in microseconds.
    """

    tcp_fastopen: int = 0x1
    keys: KeyRing = field(default_factory=KeyRing.generate)
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True
    mtu: int = 1500
    rmem_min: int = 4096
    rmem: int = 131072
    rmem_max: int = 6291456
    wmem_min: int = 4096
    wmem: int = 16384
    wmem_max: int = 4194304
    moderate_rcvbuf: bool = True
    core_rmem_max: int = 212992
    core_wmem_max: int = 212992
    somaxconn: int = 4096
    max_syn_backlog: int = 2048
    syncookies: int = 1
    min_snd_mss: int = 48
    invalid_ratelimit: float = 0.5
    challenge_ack_limit: int = 0x7FFFFFFF
    ecn: int = 2
    syn_retries: int = 6
    syn_linear_timeouts: int = 4
    synack_retries: int = 5
    retries2: int = 15
    blackhole_timeout: float = 0.0
    negative_cache_time: float = NEGATIVE_TIME
    #: tcp_keepalive_time, tcp_keepalive_intvl (seconds), tcp_keepalive_probes.
    keepalive_time: int = 7200
    keepalive_intvl: int = 75
    keepalive_probes: int = 9
    #: The device segments large sends itself (TSO): the engine hands it segments of many MSS,
    #: as Linux sizes them (tcp_tso_autosize); off, every segment is at most one MSS.
    tso: bool = False
    #: tcp_min_tso_segs: the fewest segments a TSO packet is given.
    min_tso_segs: int = 2
    #: The egress paces (Linux with the fq qdisc, or tcp_internal_pacing): a transmission of
    #: data leaves no earlier than the pacing rate allows after the one before it (EDT,
    #: tcp_wstamp_ns), after the first 10 segments; off, as Linux on pfifo (packetdrill's).
    pacing: bool = False
    #: With ``pacing``: bytes that may leave ahead of the pacing rate, a token bucket the rate
    #: refills; 0, none (fq's). The userspace stack's device, a TUN device, shows it no queue:
    #: it takes Linux's TCP small queues for one (what tcp_small_queue_check lets sit below TCP,
    #: two TSO packets, leaves at once), drained at the pacing rate. Not for BBR, which paces
    #: itself.
    pacing_burst: int = 0
    #: tcp_pacing_ss_ratio and tcp_pacing_ca_ratio: the pacing rate in percent of
    #: ``cwnd * mss / srtt``, in slow start (below half ssthresh) and after it (0 to 1000).
    pacing_ss_ratio: int = 200
    pacing_ca_ratio: int = 120
    #: The device's queue refuses every packet (``tc qdisc add dev DEV root pfifo limit 0``):
    #: each transmission fails locally (NET_XMIT_DROP), data stays unsent, and TCP tries again
    #: from its probe timer every TCP_RESOURCE_PROBE_INTERVAL (500 ms).
    qdisc_drops: bool = False
    #: tcp_congestion_control: the algorithm new sockets get (``cubic``, ``reno`` or ``bbr``).
    congestion_control: str = "cubic"
    #: tcp_slow_start_after_idle: the window restarts after an RTO with nothing sent.
    slow_start_after_idle: bool = True
    #: tcp_tso_win_divisor: a TSO packet is not held back once this fraction of the window
    #: is free (0: once more than 3 MSS are, tcp_max_tso_deferred_mss).
    tso_win_divisor: int = 3
    #: tcp_notsent_lowat: a socket without TCP_NOTSENT_LOWAT is writable while less than this
    #: is queued and not sent (Linux: UINT_MAX, no limit).
    notsent_lowat: int = 0xFFFFFFFF
    #: tcp_early_retrans: 3 or 4 arm a tail loss probe (tcp_schedule_loss_probe), any other
    #: value (0 to 4) none; it does nothing else in Linux 6.x (RACK is tcp_recovery's).
    early_retrans: int = 3
    #: The tcp_cubic module's parameters (``/sys/module/tcp_cubic/parameters``): the host's
    #: CUBIC connections read them as they go, a change takes effect on the next ACK.
    cubic: CubicParams = field(default_factory=CubicParams)

    @property
    def wscale(self) -> int:
        """The window scale a SYN offers, as Linux tcp_select_initial_window: for the largest
        buffer the socket may get (tcp_rmem[2], net.core.rmem_max), ilog2 - 15 within 0..14
        (7 for the stock 6 MB, 8 for packetdrill's 15 MB)."""
        space = max(self.rmem_max, self.core_rmem_max)
        return min(max(space.bit_length() - 16, 0), 14)

    usec_ts_routes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def usec_ts(self, remote: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Linux dst_tcp_usec_ts: the route to ``remote`` has ``features tcp_usec_ts``."""
        return any(remote in network for network in self.usec_ts_routes)


class SettingsChanges(TypedDict, total=False):
    """Keyword arguments of :class:`~fastopen.engine.Host`: any :class:`Settings` field."""

    tcp_fastopen: int
    keys: KeyRing
    timestamps: bool
    sack: bool
    window_scaling: bool
    mtu: int
    rmem_min: int
    rmem: int
    rmem_max: int
    wmem_min: int
    wmem: int
    wmem_max: int
    moderate_rcvbuf: bool
    core_rmem_max: int
    core_wmem_max: int
    somaxconn: int
    max_syn_backlog: int
    syncookies: int
    min_snd_mss: int
    invalid_ratelimit: float
    challenge_ack_limit: int
    ecn: int
    syn_retries: int
    syn_linear_timeouts: int
    synack_retries: int
    retries2: int
    blackhole_timeout: float
    negative_cache_time: float
    keepalive_time: int
    keepalive_intvl: int
    keepalive_probes: int
    tso: bool
    min_tso_segs: int
    pacing: bool
    pacing_burst: int
    pacing_ss_ratio: int
    pacing_ca_ratio: int
    qdisc_drops: bool
    usec_ts_routes: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    congestion_control: str
    slow_start_after_idle: bool
    tso_win_divisor: int
    notsent_lowat: int
    early_retrans: int
    cubic: CubicParams
