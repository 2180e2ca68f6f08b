"""A server farm behind a direct-server-return load balancer, in network namespaces.

``with Farm(servers=2, shared_key=True) as farm:`` builds::

    client (198.18.0.1) --- lb (router) --+-- server 0 (198.18.10.2, VIP on lo)
                                          +-- server 1 (198.18.11.2, VIP on lo)

The virtual address :attr:`Farm.vip` (198.18.1.1) sits on every server's loopback, so a server
answers from it straight back to the client: the load balancer rewrites nothing, it only routes.
It picks a server per SYN with nftables in the ``lb`` namespace (mark, then policy routing: fwmark
``k + 1`` routes the VIP to server ``k``), keeps the choice in the connection's conntrack mark for
the rest of the connection, and a retransmitted SYN is a new choice. :meth:`Farm.steer` sets the
policy: ``"hash"`` (a hash of the client's address and port: a retransmitted SYN lands where the
first did), ``"round_robin"`` (each SYN goes to the next server, a retransmitted SYN included) or
a server's index (every SYN goes there). :meth:`Farm.drop_syn_acks` drops the next SYN-ACKs from
the VIP (before conntrack sees them), so the client retransmits its SYN: with ``round_robin`` the
retransmission reaches another server, the seed's third duplicate case. The first server
retransmits its SYN-ACK on its own timer, 1 s after the first, as the client retransmits the SYN;
drop those too (``drop_syn_acks(6, server=0)``), or the client may complete the handshake with the
first server and then be reset by the second.

With ``shared_key`` every server's kernel has the same TFO key (``net.ipv4.tcp_fastopen_key`` of
its namespace), so a cookie from one is good on all; without, each has its own random key. Keys
are never printed. :meth:`Farm.serve` runs a kernel TFO echo server on every server and tells
what each one processed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from fastopen.cookies import KeyRing
from fastopen.errors import FastOpenError
from fastopen.lab import netns
from fastopen.lab.netns import Netns, link_address
from fastopen.lab.router import attach, make_router, nft, nft_counter
from fastopen.lab.servers import kernel_echo

CLIENT_ADDR = "198.18.0.1"
CLIENT_GATEWAY = "198.18.0.254"
#: The client's scope-link address that keeps its link set up under a userspace stack.
CLIENT_ANCHOR = "198.18.0.253"
VIP = "198.18.1.1"
#: Where the whole lab lives; the client and the servers route it through the load balancer.
LAB_NET = "198.18.0.0/15"
TABLE = "fo_farm"
#: The most servers a farm has (their links are 198.18.10.0/24 ... 198.18.17.0/24).
MAX_SERVERS = 8
#: Hook priorities: SYN-ACK drops before conntrack (-200) sees them, steering at mangle.
_RAW, _MANGLE = -300, -150


def server_address(index: int) -> str:
    """The link address of server ``index`` (its side of the veth to the load balancer)."""
    return f"198.18.{10 + index}.2"


@dataclass
class Served:
    """What one server processed: each request's first read, in order."""

    requests: list[bytes] = field(default_factory=list)


class Farm:
    """A client, a direct-server-return load balancer and ``servers`` servers (a context
    manager; see the module docstring). ``tfo`` is the ``net.ipv4.tcp_fastopen`` bits of every
    namespace; ``policy`` the first :meth:`steer` policy."""

    def __init__(
        self,
        servers: int = 2,
        *,
        shared_key: bool = True,
        tfo: int = 0x3,
        policy: str | int = "hash",
    ) -> None:
        if not 1 <= servers <= MAX_SERVERS:
            raise FastOpenError(f"a farm has 1 to {MAX_SERVERS} servers, not {servers}")
        self.count = servers
        self.shared_key = shared_key
        self.tfo = tfo
        self.vip = VIP
        self.client_addr = CLIENT_ADDR
        self._policy: str | int = policy
        self._client: Netns | None = None
        self._lb: Netns | None = None
        self._servers: list[Netns] = []
        self._keys: list[KeyRing] = []

    # -- the namespaces ------------------------------------------------------------------------
    @property
    def client(self) -> Netns:
        if self._client is None:
            raise FastOpenError("the farm is not up")
        return self._client

    @property
    def lb(self) -> Netns:
        if self._lb is None:
            raise FastOpenError("the farm is not up")
        return self._lb

    @property
    def servers(self) -> list[Netns]:
        if not self._servers:
            raise FastOpenError("the farm is not up")
        return list(self._servers)

    def keys(self, index: int) -> KeyRing:
        """The TFO key ring of server ``index`` (keep it to yourself: it is never printed)."""
        return self._keys[index]

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> Farm:
        netns.check_support()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        self._client = Netns("farm-c")
        self._lb = Netns("farm-lb")
        make_router(self._lb)
        # The client's link is the whole lab's /15, the load balancer answering ARP for the VIP
        # and the servers (see router.attach), so no gateway route is needed.
        attach(
            self._lb, "c0", CLIENT_GATEWAY, self._client, "eth0", CLIENT_ADDR,
            prefix=15, anchor=CLIENT_ANCHOR,
        )  # fmt: skip
        lb_mac = link_address(self._lb, "c0")
        self._client.ip(
            "neigh", "replace", VIP, "lladdr", lb_mac, "dev", "eth0", "nud", "permanent"
        )
        netns.enable_tfo(self._client, self.tfo)
        shared = KeyRing.generate()
        for index in range(self.count):
            server = Netns(f"farm-s{index}")
            self._servers.append(server)
            gateway = f"198.18.{10 + index}.254"
            attach(self._lb, f"s{index}", gateway, server, "eth0", server_address(index))
            server.ip("addr", "add", f"{VIP}/32", "dev", "lo")
            server.ip("route", "add", LAB_NET, "via", gateway)
            netns.enable_tfo(server, self.tfo)
            keys = shared if self.shared_key else KeyRing.generate()
            server.sysctl("net.ipv4.tcp_fastopen_key", keys.to_text())
            self._keys.append(keys)
            table = str(100 + index)
            self._lb.ip("rule", "add", "fwmark", str(index + 1), "table", table)
            self._lb.ip("route", "add", f"{VIP}/32", "via", server_address(index), "table", table)
        # What the marks do not steer (not TCP: a ping, say) goes to server 0.
        self._lb.ip("route", "add", f"{VIP}/32", "via", server_address(0))
        nft(
            self._lb,
            f"""
            table ip {TABLE} {{
                counter syn_acks_dropped {{ }}
                chain raw {{
                    type filter hook prerouting priority {_RAW}; policy accept;
                }}
                chain steer {{
                    type filter hook prerouting priority {_MANGLE}; policy accept;
                    ip daddr {VIP} tcp flags & (syn | ack) == syn jump pick
                    ip daddr {VIP} meta mark set ct mark
                }}
                chain pick {{
                }}
            }}
            """,
        )
        # The retransmitted SYN and the replies of another server must not make conntrack
        # lose the connection (and so its mark).
        self._lb.sysctl("net.netfilter.nf_conntrack_tcp_be_liberal", 1)
        self.steer(self._policy)

    def close(self) -> None:
        """Delete every namespace of the farm (their veths, rules and servers go with them)."""
        for ns in (*self._servers, self._lb, self._client):
            if ns is not None:
                ns.close()
        self._servers = []
        self._client = self._lb = None

    def detach(self) -> dict[str, object]:
        """Leave the farm running after this process exits; the state :func:`remove` needs."""
        if self._client is None or self._lb is None:
            raise FastOpenError("the farm is not up")
        state: dict[str, object] = {
            "client": self._client.name,
            "lb": self._lb.name,
            "servers": [s.name for s in self._servers],
            "vip": VIP,
            "shared_key": self.shared_key,
            "policy": self._policy,
        }
        for ns in (self._client, self._lb, *self._servers):
            ns.keep()
        self._servers, self._client, self._lb = [], None, None
        return state

    def __enter__(self) -> Farm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the load balancer ---------------------------------------------------------------------
    def steer(self, policy: str | int) -> None:
        """Choose how SYNs are spread: ``"hash"``, ``"round_robin"`` (restarts at server 0) or
        a server's index (all SYNs go there). Connections already open stay where they are."""
        if policy == "hash":
            mark = f"jhash ip saddr . tcp sport mod {self.count} offset 1"
        elif policy == "round_robin":
            mark = f"numgen inc mod {self.count} offset 1"
        elif isinstance(policy, int) and 0 <= policy < self.count:
            mark = str(policy + 1)
        else:
            raise FastOpenError(
                f"unknown farm policy {policy!r}",
                hint=f'"hash", "round_robin" or a server index 0..{self.count - 1}',
            )
        nft(
            self.lb,
            f"flush chain ip {TABLE} pick\nadd rule ip {TABLE} pick ct mark set {mark}\n",
        )
        self._policy = policy

    @property
    def policy(self) -> str | int:
        return self._policy

    def drop_syn_acks(self, count: int = 1, *, server: int | None = None) -> None:
        """Drop the next ``count`` SYN-ACKs from the VIP (only server ``server``'s, if given)
        at the load balancer; :attr:`syn_acks_dropped` counts the drops."""
        if count < 1:
            raise FastOpenError(f"drop at least one SYN-ACK, not {count}")
        where = "" if server is None else f"iifname s{server} "
        nft(
            self.lb,
            f"flush chain ip {TABLE} raw\n"
            f"add rule ip {TABLE} raw ip saddr {VIP} {where}tcp flags & (syn | ack) == syn | ack"
            f" numgen inc mod 2147483648 < {count} counter name syn_acks_dropped drop\n",
        )

    @property
    def syn_acks_dropped(self) -> int:
        """SYN-ACKs :meth:`drop_syn_acks` dropped so far."""
        return nft_counter(self.lb, TABLE, "syn_acks_dropped")

    # -- an echo server on every server --------------------------------------------------------
    @contextlib.contextmanager
    def serve(self, port: int = 8080) -> Iterator[list[Served]]:
        """A kernel TFO echo server at VIP:``port`` on every server, answering
        ``b"s<index>:" + request``; yields what each one processed (``served[index].requests``,
        the first read of each connection), until the block ends."""
        with contextlib.ExitStack() as stack:
            yield [
                Served(stack.enter_context(kernel_echo(server, VIP, port, tag=f"s{i}:".encode())))
                for i, server in enumerate(self.servers)
            ]


def remove(state: dict[str, object]) -> list[str]:
    """Delete the namespaces of a detached farm (:meth:`Farm.detach`); their names."""
    servers = state.get("servers")
    names = [str(state.get("client")), str(state.get("lb"))]
    names += [str(n) for n in servers] if isinstance(servers, list) else []
    gone = [n for n in names if n.startswith(netns.PREFIX)]
    for name in gone:
        netns.remove(name)
    return gone
