"""TUN devices: a non-blocking descriptor carrying whole IP packets, and their routes.

The kernel of the namespace routes the userspace stack's addresses into the device; every packet
it writes there is read by the stack, and every packet the stack writes comes out of the device
as if it had arrived on a wire.

With offloads (``IFF_VNET_HDR`` and ``TUNSETOFFLOAD``, as gVisor and wireguard-go use them) each
packet comes after a ``virtio_net_hdr`` (:data:`VNET_HDR`): the device then takes packets whose
TCP checksum it completes (``NEEDS_CSUM``) and TCP packets of up to 64 KB that it cuts into
segments of ``gso_size`` bytes (GSO, TSO for the kernel), and hands over packets it has checked
(``DATA_VALID``) or coalesced (GRO, or the TSO of the namespace's own TCP) the same way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import struct
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fastopen.errors import KernelFeatureMissing, NamespaceError, NeedsRoot
from fastopen.kernel import sysctl
from fastopen.kernel.netns import THREAD_NS, setns

TUN = Path("/dev/net/tun")
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
# TUNSETOFFLOAD bits (include/uapi/linux/if_tun.h): checksums, then TSO of IPv4 and IPv6
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6

# struct virtio_net_hdr (include/uapi/linux/virtio_net.h), in the host's byte order (legacy)
VNET_HDR = struct.Struct("=BBHHHH")
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
#: The largest packet a device with TSO takes or gives (the IPv4 total length's limit).
GSO_MAX_SIZE = 65535
#: Bytes of IP and TCP headers a packet can have at most beside its payload (IPv6, 40 + 60).
HEADROOM = 100
#: Packets the kernel queues for the stack to read (a TUN device's ``txqueuelen``, 500 by
#: default). The stack reads them as Linux's softirq takes received packets from a CPU's backlog,
#: so it gets that queue's length (``net.core.netdev_max_backlog``, 1000): 500 lost the packets of
#: a stall of 0.1 s of a flood at 5,000 SYN/s, a client's SYN among them (retransmitted 1 s later).
TXQUEUELEN = 1000

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class Namespace(Protocol):
    """A network namespace the calling thread can enter (:class:`fastopen.lab.netns.Netns`)."""

    def entered(self) -> AbstractContextManager[None]: ...


class ThreadNamespace:
    """The network namespace the calling thread is in when this is made, to enter it again
    from anywhere (it stays alive until :meth:`close`)."""

    def __init__(self) -> None:
        self._fd = os.open(THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        home = os.open(THREAD_NS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(self._fd)
            try:
                yield
            finally:
                setns(home)
        finally:
            os.close(home)

    def close(self) -> None:
        os.close(self._fd)


@contextlib.contextmanager
def inside(ns: Namespace | None) -> Iterator[None]:
    """Run the block in ``ns`` (``None``: the namespace the thread is already in)."""
    if ns is None:
        yield
        return
    with ns.entered():
        yield


#: Flags of a received packet whose TCP checksum the device vouches for: it checked it, or it
#: is to be completed (the packet never left this machine; Linux's CHECKSUM_UNNECESSARY and
#: CHECKSUM_PARTIAL).
CHECKSUM_TRUSTED = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID


def open_tun(ns: Namespace | None, name: str, *, offloads: bool = False) -> int:
    """Create TUN device ``name`` (IFF_TUN | IFF_NO_PI) inside ``ns``; its non-blocking fd.

    ``offloads``: with IFF_VNET_HDR and checksum and TSO offloads (:data:`OFFLOADS`), or
    :class:`~fastopen.errors.KernelFeatureMissing` when the kernel refuses them.
    The device lives as long as the fd is open.
    """
    with inside(ns):
        try:
            fd = os.open(TUN, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise KernelFeatureMissing(
                f"cannot open {TUN}: {exc.strerror}", hint="load the tun module (modprobe tun)"
            ) from None
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offloads else 0)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.EPERM:
                raise NeedsRoot(f"creating TUN device {name} needs root") from None
            raise NamespaceError(
                f"cannot create TUN device {name}: {exc.strerror}",
                hint="is the name taken by another device? see `ip link`",
            ) from None
        if offloads:
            try:
                fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOADS)
            except OSError as exc:
                os.close(fd)
                raise KernelFeatureMissing(
                    f"TUN device {name} takes no checksum and TSO offloads: {exc.strerror}",
                    hint="use the device without offloads",
                ) from None
    return fd


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NamespaceError(
            f"ip {' '.join(args)} failed: {proc.stderr.strip()}", hint="are you root?"
        )


def route_into(
    ns: Namespace | None,
    name: str,
    addresses: Sequence[Interface],
    *,
    kernel_addresses: Sequence[Interface] = (),
    mtu: int = 1500,
) -> None:
    """Bring device ``name`` up (``mtu``, and :data:`TXQUEUELEN`) and have the kernel of ``ns``
    route ``addresses`` into it.

    ``kernel_addresses`` go on the device (the kernel's own end, and its source address towards
    the stack); each network of ``addresses`` they do not cover is routed into the device.
    """
    with inside(ns):  # `ip` started here runs in the namespace
        _ip("link", "set", name, "mtu", str(mtu), "txqueuelen", str(TXQUEUELEN), "up")
        for kernel in kernel_addresses:
            extra = ("nodad",) if kernel.version == 6 else ()
            _ip(f"-{kernel.version}", "addr", "add", str(kernel), "dev", name, *extra)
        for own in addresses:
            if not any(own.ip in kernel.network for kernel in kernel_addresses):
                _ip(f"-{own.version}", "route", "replace", str(own.network), "dev", name)


@dataclass(frozen=True)
class TakenOver:
    """Addresses a userspace stack took over from the kernel of a namespace, to give back, and
    the sysctls changed meanwhile, with the values they had."""

    addresses: tuple[tuple[str, Interface], ...]
    sysctls: tuple[tuple[str, str], ...]

    @property
    def interfaces(self) -> list[Interface]:
        return [iface for _, iface in self.addresses]


#: Set to 1 while addresses are taken over: forwarding, then proxy ARP per device.
_FORWARDING = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
#: Set to 0 while addresses are taken over: early demux would match a packet for a taken
#: address to a socket the kernel still has there (a TIME_WAIT one, say), and ``ip_forward``
#: drops a packet that has a socket: new connections reusing its ports would never arrive.
_EARLY_DEMUX = "net.ipv4.tcp_early_demux"


def _ip_json(*args: str) -> list[dict[str, Any]]:
    shown = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    found: list[dict[str, Any]] = json.loads(shown.stdout or "[]")
    return found


def take_over(ns: Namespace | None) -> TakenOver:
    """Take every global address of ``ns`` away from its kernel, which then only routes.

    Each address leaves its device; the device keeps the route to the address's network, and
    forwarding goes on, so the kernel carries the traffic of those addresses to wherever they
    are routed next (a TUN device: :func:`route_into` with host prefixes). The device answers
    ARP for its IPv4 addresses still (proxy ARP, for the route into the TUN device), and keeps
    its static neighbours (the kernel flushes a device's IPv4 neighbours with its last address);
    TCP early demux is off (see :data:`_EARLY_DEMUX`).
    """
    with inside(ns):
        taken = tuple(
            (link["ifname"], ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}"))
            for link in _ip_json("addr", "show", "scope", "global")
            for a in link.get("addr_info", ())
            if a.get("scope") == "global"
        )
        static = [n for n in _ip_json("neigh", "show", "nud", "permanent") if "lladdr" in n]
        changed = list(_FORWARDING)
        changed += sorted({f"net.ipv4.conf.{dev}.proxy_arp" for dev, i in taken if i.version == 4})
        sysctls = tuple((name, sysctl.read(name)) for name in [*changed, _EARLY_DEMUX])
        for name in changed:
            sysctl.write(name, 1)
        sysctl.write(_EARLY_DEMUX, 0)
        for dev, iface in taken:
            _ip(f"-{iface.version}", "addr", "del", str(iface), "dev", dev)
            _ip(f"-{iface.version}", "route", "replace", str(iface.network), "dev", dev)
        for n in static:
            _ip("neigh", "replace", n["dst"], "lladdr", n["lladdr"], "dev", n["dev"], "nud",
                "permanent")  # fmt: skip
    return TakenOver(taken, sysctls)


def give_back(ns: Namespace | None, taken: TakenOver) -> None:
    """Undo :func:`take_over`: the addresses back on their devices, the sysctls as they were."""
    with inside(ns):
        for dev, iface in taken.addresses:
            extra = ("nodad",) if iface.version == 6 else ()
            _ip(f"-{iface.version}", "addr", "replace", str(iface), "dev", dev, *extra)
        for name, value in taken.sysctls:
            sysctl.write(name, value)


def host_route(iface: Interface) -> Interface:
    """The address alone (/32 or /128): routed into a TUN device, not its whole network."""
    return ipaddress.ip_interface(f"{iface.ip}/{iface.max_prefixlen}")
