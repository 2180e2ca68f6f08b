"""TCP MD5 signatures (RFC 2385) as Linux has them (``CONFIG_TCP_MD5SIG``, net/ipv4/tcp.c and
tcp_ipv4.c): the keys TCP_MD5SIG and TCP_MD5SIG_EXT give a socket, the check of every segment
that arrives and the signing of every segment a keyed connection sends.

A socket's keys live in its :class:`~fastopen.engine.socket.SocketOptions` (``md5_keys``), which
a listener's children share; a socket without keys holds nothing more (the shared defaults).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket as _socket
import struct
from collections import Counter
from dataclasses import dataclass

from fastopen.engine.cache import IPAddress
from fastopen.wire import (
    TCP_MD5_DIGEST_LEN,
    Md5Sig,
    Nop,
    TcpOption,
    TcpSegment,
    md5_digest,
)

#: The socket options (linux/tcp.h) and TCP_MD5SIG_EXT's flag of ``tcpm_prefixlen``.
TCP_MD5SIG = 14
TCP_MD5SIG_EXT = 32
TCP_MD5SIG_FLAG_PREFIX = 0x1
TCP_MD5SIG_MAXKEYLEN = 80
#: struct tcp_md5sig: a sockaddr_storage, tcpm_flags, tcpm_prefixlen, tcpm_keylen,
#: tcpm_ifindex, tcpm_key[80] (216 bytes).
_TCP_MD5SIG = struct.Struct("=128sBBHi80s")
TCP_MD5SIG_LEN = _TCP_MD5SIG.size
#: The options an MD5-signed segment starts with (tcp_options_write: ``nop,nop,md5``; the
#: digest of zeros stands for the one :func:`sign` computes) and their space in the header
#: (TCPOLEN_MD5SIG_ALIGNED).
MD5_OPTIONS: tuple[TcpOption, ...] = (Nop(), Nop(), Md5Sig(bytes(TCP_MD5_DIGEST_LEN)))
MD5_OPTION_SPACE = 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Md5Key:
    """One key of a socket (Linux ``struct tcp_md5sig_key``): the peers it is for and the key."""

    network: Network
    key: bytes


class Md5KeyError(ValueError):
    """A struct tcp_md5sig Linux refuses (EINVAL)."""


def parse_md5sig(value: bytes, family: int, ext: bool) -> tuple[Network, bytes]:
    """The peers and key of a struct tcp_md5sig, as tcp_v4_parse_md5_keys and
    tcp_v6_parse_md5_keys read it (an empty key deletes); :class:`Md5KeyError` for what they
    refuse: a short struct, an address of another family, a prefix too long, a key too long."""
    if len(value) < TCP_MD5SIG_LEN:
        raise Md5KeyError(f"struct tcp_md5sig is {TCP_MD5SIG_LEN} bytes, not {len(value)}")
    addr, flags, prefixlen, keylen, _, key = _TCP_MD5SIG.unpack_from(value)
    sa_family = int.from_bytes(addr[:2], "little")
    address: IPAddress
    if family == _socket.AF_INET and sa_family == _socket.AF_INET:
        address = ipaddress.IPv4Address(addr[4:8])
    elif family == _socket.AF_INET6 and sa_family == _socket.AF_INET6:
        address = ipaddress.IPv6Address(addr[8:24])
        mapped = address.ipv4_mapped
        if mapped is not None:  # tcp_v6_parse_md5_keys: a v4-mapped peer's key is an AF_INET one
            address = mapped
            prefixlen = max(prefixlen - 96, 0) if ext and flags & TCP_MD5SIG_FLAG_PREFIX else 32
    else:
        raise Md5KeyError(f"tcpm_addr of family {sa_family} on a socket of family {family}")
    bits = address.max_prefixlen
    if not (ext and flags & TCP_MD5SIG_FLAG_PREFIX):
        prefixlen = bits
    elif prefixlen > bits:
        raise Md5KeyError(f"tcpm_prefixlen {prefixlen} above {bits}")
    if keylen > TCP_MD5SIG_MAXKEYLEN:
        raise Md5KeyError(f"tcpm_keylen {keylen} above {TCP_MD5SIG_MAXKEYLEN}")
    return ipaddress.ip_network((address, prefixlen), strict=False), key[:keylen]


def set_key(keys: tuple[Md5Key, ...], network: Network, key: bytes) -> tuple[Md5Key, ...]:
    """``keys`` with the key for ``network`` replaced, added (tcp_md5_do_add) or, for an empty
    key, deleted (tcp_md5_do_del)."""
    others = tuple(k for k in keys if k.network != network)
    return (*others, Md5Key(network, key)) if key else others


def lookup(keys: tuple[Md5Key, ...], addr: IPAddress) -> bytes | None:
    """The key for peer ``addr``: the one of the longest prefix holding it (tcp_md5_do_lookup)."""
    best: Md5Key | None = None
    for k in keys:
        net = k.network
        if (
            addr.version == net.version
            and addr in net
            and (best is None or net.prefixlen > best.network.prefixlen)
        ):
            best = k
    return best.key if best is not None else None


def hash_location(seg: TcpSegment) -> Md5Sig | None:
    """The segment's MD5 option of the right length (tcp_parse_md5sig_option), or None."""
    for option in seg.options:
        if type(option) is Md5Sig:
            return option
    return None


def inbound_ok(
    keys: tuple[Md5Key, ...],
    src: IPAddress,
    dst: IPAddress,
    seg: TcpSegment,
    counters: Counter[str],
) -> bool:
    """Linux tcp_inbound_md5_hash: False (the segment is dropped) when a key for the peer
    expects a signature the segment lacks (TCPMD5NotFound), when the segment is signed and no
    key expects one (TCPMD5Unexpected), or when the signature is wrong (TCPMD5Failure)."""
    location = hash_location(seg)
    key = lookup(keys, src) if keys else None
    if key is None and location is None:
        return True
    if location is None:
        counters["TCPMD5NotFound"] += 1
        return False
    if key is None:
        counters["TCPMD5Unexpected"] += 1
        return False
    if md5_digest(key, src, dst, seg) != location.digest:
        counters["TCPMD5Failure"] += 1
        return False
    return True


def sign(key: bytes, src: IPAddress, dst: IPAddress, seg: TcpSegment) -> TcpSegment:
    """``seg`` signed: ``nop,nop,md5`` before its options, as tcp_options_write puts them,
    with the digest of the segment so laid out (tcp_v4_md5_hash_skb). The caller left the
    room (:data:`MD5_OPTION_SPACE`) in its options."""
    laid_out = dataclasses.replace(seg, options=MD5_OPTIONS + seg.options)
    digest = Md5Sig(md5_digest(key, src, dst, laid_out))
    return dataclasses.replace(seg, options=(*MD5_OPTIONS[:2], digest, *seg.options))
