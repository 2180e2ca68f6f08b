"""Routers between lab namespaces, and the netfilter rules that make them middleboxes.

A router is a :class:`~fastopen.lab.netns.Netns` with forwarding on; :func:`attach` joins it to
another namespace by a veth pair with an address on each end and static neighbours (no ARP delays
the first SYN). :func:`nft` loads an nftables ruleset and :func:`iptables` runs one iptables
command in a namespace; their rules go with the namespace when it is deleted.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from fastopen.errors import KernelFeatureMissing, NamespaceError
from fastopen.lab.netns import Netns, link_address

#: Namespace sysctls of a router: forward, and check no source address (replies of a
#: direct-server-return farm come from an address the router routes elsewhere).
ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.default.rp_filter": 0,
}


def make_router(ns: Netns) -> None:
    """Turn forwarding on in ``ns`` (its own sysctls; the root namespace is not touched)."""
    for name, value in ROUTER_SYSCTLS.items():
        ns.sysctl(name, value)


def attach(
    router: Netns,
    router_dev: str,
    router_addr: str,
    other: Netns,
    other_dev: str,
    other_addr: str,
    *,
    prefix: int = 24,
    mtu: int = 1500,
    anchor: str | None = None,
) -> None:
    """A veth pair between ``router`` (``router_dev``) and ``other`` (``other_dev``), IPv4
    addresses ``router_addr``/``other_addr`` in one ``/prefix``, up, with static neighbours.

    A userspace stack that takes the other side's address over (``replace_kernel``) would leave
    its kernel without an IPv4 address on the device, which flushes the device's neighbours and
    gateway routes and leaves ARP without a source address. ``anchor`` is a second address for
    the other side, scope link (not taken over), that keeps them; and the router answers ARP for
    what it routes elsewhere (proxy ARP), so a wide ``prefix`` on the other side needs no
    gateway."""
    proc = subprocess.run(
        [
            "ip", "link", "add", "name", router_dev, "netns", router.name, "mtu", str(mtu),
            "type", "veth", "peer", "name", other_dev, "netns", other.name, "mtu", str(mtu),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise NamespaceError(f"cannot make a veth pair: {proc.stderr.strip()}")
    for ns, dev, addr in ((router, router_dev, router_addr), (other, other_dev, other_addr)):
        ns.ip("addr", "add", f"{addr}/{prefix}", "dev", dev)
        ns.ip("link", "set", dev, "up")
    if anchor is not None:
        other.ip("addr", "add", f"{anchor}/32", "dev", other_dev, "scope", "link")
    router.sysctl(f"net.ipv4.conf.{router_dev}.proxy_arp", 1)
    router.sysctl(f"net.ipv4.neigh.{router_dev}.proxy_delay", 0)  # not up to 0.8 s late
    for ns, dev, peer, peer_dev, peer_addr in (
        (router, router_dev, other, other_dev, other_addr),
        (other, other_dev, router, router_dev, router_addr),
    ):
        lladdr = link_address(peer, peer_dev)
        ns.ip("neigh", "replace", peer_addr, "lladdr", lladdr, "dev", dev, "nud", "permanent")


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise KernelFeatureMissing(
            f"the {tool} command is missing", hint="apt-get install iptables nftables (./dev does)"
        )


def nft(ns: Netns, ruleset: str) -> str:
    """Load an nftables ruleset (``nft -f -`` syntax) in ``ns``; what nft printed."""
    _need("nft")
    proc = ns.run(["nft", "-f", "-"], input=ruleset, check=False)
    if proc.returncode != 0:
        raise NamespaceError(f"nft in {ns.name} refused the rules: {proc.stderr.strip()}")
    return proc.stdout


def nft_counter(ns: Netns, table: str, name: str, family: str = "ip") -> int:
    """The packets a named nftables counter counted so far."""
    _need("nft")
    proc = ns.run(["nft", "list", "counter", family, table, name], check=False)
    if proc.returncode != 0:
        raise NamespaceError(f"no counter {name} in {table} of {ns.name}: {proc.stderr.strip()}")
    for word, value in zip(proc.stdout.split(), proc.stdout.split()[1:], strict=False):
        if word == "packets":
            return int(value)
    raise NamespaceError(f"cannot read counter {name}: {proc.stdout!r}")


def iptables(ns: Netns, args: Sequence[str], *, ipv6: bool = False) -> None:
    """Run one ``iptables ARGS`` (``ip6tables`` with ``ipv6``) in ``ns``."""
    tool = "ip6tables" if ipv6 else "iptables"
    _need(tool)
    proc = ns.run([tool, "-w", *args], check=False)
    if proc.returncode != 0:
        raise NamespaceError(f"{tool} {' '.join(args)} in {ns.name}: {proc.stderr.strip()}")
