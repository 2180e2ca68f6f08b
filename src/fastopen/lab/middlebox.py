"""Middleboxes that break TFO, made of netfilter rules in a router namespace of the lab.

``Lab(middleboxes=["drop-syn-data"])`` (or ``fastopen lab up --middlebox drop-syn-data``) puts
a router namespace between the link and the server::

    client (tun0) --- emulated link --- router (tun0 | s0) --- veth --- server (eth0)

The client and the server keep their addresses (198.18.0.1 and .2, fd00:f0::1 and ::2); the
router forwards between them, and each middlebox is rules on its forward path, so they act on
the kernel's TCP and on the userspace stack alike. ``NAME:KEY=VALUE,...`` sets a box's
parameters (``cgnat:pool=8``, ``syn-blackhole:seconds=5``); :data:`MIDDLEBOXES` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastopen.errors import FastOpenError
from fastopen.lab.netns import CLIENT, SERVER, Netns, link_address
from fastopen.lab.router import attach, iptables, make_router, nft

#: The router's device towards the link (the client) and its veth towards the server.
TO_CLIENT, TO_SERVER = "tun0", "s0"
#: The router's address on the server's side.
ROUTER_ADDR = "198.18.0.254"
#: The server's scope-link address that keeps its link set up under a userspace stack.
SERVER_ANCHOR = "198.18.0.3"
#: Carrier-grade NAT: the public addresses the client is mapped to (198.18.64.1 and on).
NAT_POOL = "198.18.64.0/24"
#: The TFO option kinds: IANA's 34, and the experimental 254 (RFC 6994, magic 0xF989).
KINDS = (34, 254)
#: A segment with data (four bytes at least): the word after the IP and TCP headers exists. IPv4
#: finds the TCP header by the IHL field, IPv6 at 40 (no extension headers in the lab).
_HAS_DATA = {4: "0>>22&0x3C@12>>26&0x3C@0&0x0=0x0", 6: "52>>26&0x3C@40&0x0=0x0"}

Params = dict[str, str]
Rules = list[tuple[int, list[str]]]


@dataclass(frozen=True)
class Middlebox:
    """One kind of box: a name, what it does, its parameters and their defaults."""

    name: str
    summary: str
    build: Callable[[Netns, Params], None]
    defaults: Params = field(default_factory=dict)


@dataclass(frozen=True)
class Placed:
    """A middlebox with its parameters, as ``NAME[:KEY=VALUE,...]`` names it."""

    box: Middlebox
    params: Params

    @classmethod
    def parse(cls, text: str) -> Placed:
        name, _, rest = text.strip().partition(":")
        box = MIDDLEBOXES.get(name)
        if box is None:
            raise FastOpenError(
                f"no middlebox named {name!r}",
                hint="fastopen lab middleboxes lists them: " + ", ".join(MIDDLEBOXES),
            )
        params = dict(box.defaults)
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in box.defaults:
                known = ", ".join(f"{k}={v}" for k, v in box.defaults.items()) or "none"
                raise FastOpenError(
                    f"middlebox {name}: bad parameter {item!r}", hint=f"its parameters: {known}"
                )
            params[key] = value
        return cls(box, params)

    def __str__(self) -> str:
        changed = [f"{k}={v}" for k, v in self.params.items() if self.box.defaults.get(k) != v]
        return self.box.name + (":" + ",".join(changed) if changed else "")


def _kinds(params: Params) -> list[int]:
    try:
        kinds = [int(k) for k in params["kinds"].split("+")]
    except ValueError:
        raise FastOpenError(f"kinds={params['kinds']!r}: option kinds like 34+254") from None
    return kinds


def _int(params: Params, key: str, low: int, high: int) -> int:
    try:
        value = int(params[key])
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise FastOpenError(f"{key}={params[key]!r}: a whole number from {low} to {high}")
    return value


def _install(router: Netns, rules: Rules) -> None:
    for version, args in rules:
        iptables(router, args, ipv6=version == 6)


_SYN = ["-p", "tcp", "--syn"]
_IN_CLIENT = ["-A", "FORWARD", "-i", TO_CLIENT]
_IN_SERVER = ["-A", "FORWARD", "-i", TO_SERVER]


def _with_data(version: int) -> list[str]:
    return ["-m", "u32", "--u32", _HAS_DATA[version]]


def _drop_syn_option(router: Netns, params: Params) -> None:
    _install(
        router,
        [
            (v, [*_IN_CLIENT, *_SYN, "-m", "tcp", "--tcp-option", str(k), "-j", "DROP"])
            for v in (4, 6)
            for k in _kinds(params)
        ],
    )


def _strip_option(router: Netns, params: Params) -> None:
    kinds = ",".join(str(k) for k in _kinds(params))
    rule = ["-t", "mangle", "-A", "FORWARD", "-p", "tcp", "-j", "TCPOPTSTRIP"]
    _install(router, [(v, [*rule, "--strip-options", kinds]) for v in (4, 6)])


def _drop_syn_data(router: Netns, params: Params) -> None:
    _install(router, [(v, [*_IN_CLIENT, *_SYN, *_with_data(v), "-j", "DROP"]) for v in (4, 6)])


def _reset_syn_data(router: Netns, params: Params) -> None:
    reset = ["-j", "REJECT", "--reject-with", "tcp-reset"]
    _install(router, [(v, [*_IN_CLIENT, *_SYN, *_with_data(v), *reset]) for v in (4, 6)])


def _drop_synack_option(router: Netns, params: Params) -> None:
    synack = ["-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN,ACK", "-m", "tcp"]
    _install(
        router,
        [
            (v, [*_IN_SERVER, *synack, "--tcp-option", str(k), "-j", "DROP"])
            for v in (4, 6)
            for k in _kinds(params)
        ],
    )


def _syn_blackhole(router: Netns, params: Params) -> None:
    seconds = str(_int(params, "seconds", 1, 86400))
    recent = ["-m", "recent", "--name", "fo_tfo"]
    rules: Rules = []
    for v in (4, 6):
        for k in _kinds(params):
            tfo = [*_IN_CLIENT, *_SYN, "-m", "tcp", "--tcp-option", str(k)]
            rules.append((v, [*tfo, *recent, "--set", "-j", "ACCEPT"]))
        check = [*recent, "--rcheck", "--seconds", seconds]
        rules.append((v, [*_IN_CLIENT, *_SYN, *check, "-j", "DROP"]))
    _install(router, rules)


def _drop_server_data(router: Netns, params: Params) -> None:
    after = [*_IN_SERVER, "-p", "tcp", "--tcp-flags", "SYN", "NONE"]
    _install(router, [(v, [*after, *_with_data(v), "-j", "DROP"]) for v in (4, 6)])


def nat_address(index: int) -> str:
    """The public address ``index`` (0-based) of the carrier-grade NAT's pool."""
    return f"198.18.64.{index + 1}"


def _cgnat(router: Netns, params: Params) -> None:
    pool = _int(params, "pool", 1, 250)
    if params["mapping"] not in ("random", "rotate"):
        raise FastOpenError(f"mapping={params['mapping']!r}: random or rotate")
    gen = "random" if params["mapping"] == "random" else "inc"
    addresses = ", ".join(f"{i} : {nat_address(i)}" for i in range(pool))
    nft(
        router,
        f"""
        table ip fo_cgnat {{
            chain postrouting {{
                type nat hook postrouting priority srcnat; policy accept;
                oifname "{TO_SERVER}" ip saddr {CLIENT.ipv4} snat to numgen {gen} mod {pool} map {{ {addresses} }}
            }}
        }}
        """,  # noqa: E501
    )


MIDDLEBOXES: dict[str, Middlebox] = {
    box.name: box
    for box in (
        Middlebox(
            "drop-syn-option",
            "drops SYNs that carry a TFO option (kinds=34+254)",
            _drop_syn_option,
            {"kinds": "34+254"},
        ),
        Middlebox(
            "strip-option",
            "removes the TFO option from every segment, both ways (TCPOPTSTRIP)",
            _strip_option,
            {"kinds": "34+254"},
        ),
        Middlebox("drop-syn-data", "drops SYNs that carry data", _drop_syn_data),
        Middlebox(
            "drop-synack-option",
            "drops SYN-ACKs that carry a TFO option",
            _drop_synack_option,
            {"kinds": "34+254"},
        ),
        Middlebox(
            "syn-blackhole",
            "after a SYN with a TFO option (let through) drops that client's other SYNs "
            "for a while (recent)",
            _syn_blackhole,
            {"kinds": "34+254", "seconds": "60"},
        ),
        Middlebox("reset-syn-data", "answers SYNs that carry data with a reset", _reset_syn_data),
        Middlebox(
            "drop-server-data",
            "drops the server's data after the handshake",
            _drop_server_data,
        ),
        Middlebox(
            "cgnat",
            "carrier-grade NAT: maps the client (IPv4) to a pool of public addresses "
            "198.18.64.x, a new mapping per connection (mapping=random|rotate)",
            _cgnat,
            {"pool": "4", "mapping": "random"},
        ),
    )
}


def parse(names: list[str] | tuple[str, ...]) -> list[Placed]:
    """``NAME[:KEY=VALUE,...]`` strings (or already placed boxes) as placed middleboxes."""
    return [Placed.parse(name) for name in names]


def insert_router(router: Netns, server: Netns, *, mtu: int = 1500) -> None:
    """Wire ``router`` between the link (its ``tun0``, already open) and ``server`` (a veth,
    ``s0`` in the router, ``eth0`` with the server's addresses in the server)."""
    make_router(router)
    router.ip("link", "set", TO_CLIENT, "mtu", str(mtu), "up")
    # The server's link is the whole lab's /15 (the client and the NAT pool on it, the router
    # answering ARP for them); the router owns no address on the client's side and routes
    # each end to its device.
    attach(
        router, TO_SERVER, ROUTER_ADDR, server, "eth0", SERVER.ipv4,
        prefix=15, mtu=mtu, anchor=SERVER_ANCHOR,
    )  # fmt: skip
    router.ip("route", "replace", f"{CLIENT.ipv4}/32", "dev", TO_CLIENT)
    router.ip("route", "replace", NAT_POOL, "dev", TO_CLIENT)
    router.ip("route", "replace", f"{SERVER.ipv4}/32", "dev", TO_SERVER)
    # IPv6: no address on the router either; static neighbours on the veth.
    server.ip("-6", "addr", "add", f"{SERVER.ipv6}/64", "dev", "eth0", "nodad")
    router.ip("-6", "route", "replace", f"{CLIENT.ipv6}/128", "dev", TO_CLIENT)
    router.ip("-6", "route", "replace", f"{SERVER.ipv6}/128", "dev", TO_SERVER)
    for ns, dev, peer, peer_dev, addr in (
        (router, TO_SERVER, server, "eth0", SERVER.ipv6),
        (server, "eth0", router, TO_SERVER, CLIENT.ipv6),
    ):
        lladdr = link_address(peer, peer_dev)
        ns.ip("neigh", "replace", addr, "lladdr", lladdr, "dev", dev, "nud", "permanent")
    # The server reaches the client (and the NAT pool) through the router.
    lladdr = link_address(router, TO_SERVER)
    server.ip("neigh", "replace", CLIENT.ipv4, "lladdr", lladdr, "dev", "eth0", "nud", "permanent")


def install(router: Netns, boxes: list[Placed]) -> None:
    """Put each box's rules in the router, in order."""
    for placed in boxes:
        placed.box.build(router, placed.params)
