"""ICMP and ICMPv6 errors about TCP segments, read as Linux's ``tcp_v4_err``/``tcp_v6_err`` do.

An :class:`IcmpError` carries what the quoted header says (the segment this host sent: its
addresses, ports and sequence number) with the message's type, code and MTU. :func:`classify`
says what Linux makes of it before it looks at the connection: a path MTU to lower
(fragmentation needed, packet too big), an errno to report (``icmp_err_convert``,
``icmpv6_err_convert``), or nothing (source quench, redirects, echo...).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fastopen.engine.cache import IPAddress

ICMP_DEST_UNREACH = 3
ICMP_SOURCE_QUENCH = 4
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_FRAG_NEEDED = 4
ICMPV6_DEST_UNREACH = 1
ICMPV6_PKT_TOOBIG = 2
ICMPV6_TIME_EXCEED = 3
ICMPV6_PARAMPROB = 4
#: Linux's smallest path MTUs (``ip_rt_min_pmtu``; IPV6_MIN_MTU).
MIN_PMTU = {4: 552, 6: 1280}
#: How long a learnt path MTU holds (Linux ``ip_rt_mtu_expires``, seconds).
PMTU_EXPIRES = 600.0

#: Linux ``icmp_err_convert``: errno of each ICMPv4 destination-unreachable code.
UNREACH_ERRNO = (
    errno.ENETUNREACH,  # net_unreachable
    errno.EHOSTUNREACH,  # host_unreachable
    errno.ENOPROTOOPT,  # protocol_unreachable
    errno.ECONNREFUSED,  # port_unreachable
    errno.EMSGSIZE,  # frag_needed
    errno.EOPNOTSUPP,  # source_route_failed
    errno.ENETUNREACH,  # net_unknown
    errno.EHOSTDOWN,  # host_unknown
    errno.ENONET,  # source_host_isolated
    errno.ENETUNREACH,  # net_prohibited
    errno.EHOSTUNREACH,  # host_prohibited
    errno.ENETUNREACH,  # net_unreachable_for_tos
    errno.EHOSTUNREACH,  # host_unreachable_for_tos
    errno.EHOSTUNREACH,  # packet_filtered
    errno.EHOSTUNREACH,  # precedence_violation
    errno.EHOSTUNREACH,  # precedence_cutoff
)
#: Linux ``icmpv6_err_convert`` for destination unreachable, by code.
UNREACH6_ERRNO = (
    errno.ENETUNREACH,  # no_route
    errno.EACCES,  # admin_prohibited
    errno.EHOSTUNREACH,  # not_neighbour
    errno.EHOSTUNREACH,  # address_unreachable
    errno.ECONNREFUSED,  # port_unreachable
    errno.EACCES,  # policy_fail
    errno.EACCES,  # reject_route
)


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP (``version`` 4) or ICMPv6 (6) error quoting a TCP segment this host sent.

    ``src``/``sport`` are this host's side of the quoted segment, ``dst``/``dport`` the peer's,
    ``seq`` its sequence number; ``mtu`` the next-hop MTU of a fragmentation-needed or
    packet-too-big message (0 otherwise).
    """

    version: int
    type: int
    code: int
    src: IPAddress
    dst: IPAddress
    sport: int
    dport: int
    seq: int
    mtu: int = 0

    @property
    def key(self) -> tuple[IPAddress, int, IPAddress, int]:
        """The connection it is about, as the host keys connections."""
        return (self.src, self.sport, self.dst, self.dport)

    @property
    def pmtu(self) -> bool:
        """Fragmentation needed (ICMPv4) or packet too big (ICMPv6): a path MTU report."""
        if self.version == 4:
            return (self.type, self.code) == (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED)
        return self.type == ICMPV6_PKT_TOOBIG

    @property
    def aborts_request(self) -> bool:
        """Whether it drops a pending connection request (``tcp_req_err``'s abort)."""
        if self.version == 4:
            return self.type in (ICMP_PARAMETERPROB, ICMP_TIME_EXCEEDED) or (
                self.type == ICMP_DEST_UNREACH
                and self.code in (ICMP_NET_UNREACH, ICMP_HOST_UNREACH)
            )
        # icmpv6_err_convert's "fatal": every unreachable code but no_route; parameter problems
        return (
            self.type == ICMPV6_DEST_UNREACH and self.code != 0
        ) or self.type == ICMPV6_PARAMPROB

    def errno(self) -> int | None:
        """The error Linux reports for it, or None when it ignores the message."""
        if self.version == 4:
            if self.type == ICMP_PARAMETERPROB:
                return errno.EPROTO
            if self.type == ICMP_TIME_EXCEEDED:
                return errno.EHOSTUNREACH
            if self.type == ICMP_DEST_UNREACH and self.code < len(UNREACH_ERRNO):
                return UNREACH_ERRNO[self.code]
            return None
        if self.type == ICMPV6_DEST_UNREACH:
            return UNREACH6_ERRNO[self.code] if self.code < len(UNREACH6_ERRNO) else errno.EPROTO
        if self.type == ICMPV6_PARAMPROB:
            return errno.EPROTO
        if self.type == ICMPV6_TIME_EXCEED:
            return errno.EHOSTUNREACH
        return None
