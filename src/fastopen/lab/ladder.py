"""A ladder diagram of one TCP connection, drawn from the packets a lab link carried."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastopen.errors import MalformedPacket
from fastopen.pcap import CapturedPacket
from fastopen.wire import Flags, TcpSegment, parse_tcp_packet


@dataclass(frozen=True)
class Rung:
    """One segment of the connection: when it left, which way, and what it carried."""

    time: float
    from_client: bool
    label: str


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int

    def __str__(self) -> str:
        return (
            f"[{self.address}]:{self.port}"
            if ":" in self.address
            else f"{self.address}:{self.port}"
        )


def _flags(flags: Flags) -> str:
    names = []
    if flags & Flags.SYN:
        names.append("SYN-ACK" if flags & Flags.ACK else "SYN")
    elif flags & Flags.ACK:
        names.append("ACK")
    for flag in (Flags.FIN, Flags.RST):
        if flags & flag:
            names.append(str(flag.name))
    return ", ".join(names)


def _label(seg: TcpSegment, peer_isn: int | None) -> str:
    parts = [_flags(seg.flags)]
    fo = seg.fastopen
    if fo is not None:
        kind = " (exp. 254)" if fo.experimental else ""
        parts.append(
            f"FO cookie request{kind}" if fo.is_request else f"FO cookie {fo.cookie.hex()}"
        )
    if seg.payload:
        parts.append(f"{len(seg.payload)} bytes")
    if seg.flags & Flags.SYN and seg.flags & Flags.ACK and peer_isn is not None:
        acked = (seg.ack - peer_isn - 1) % 2**32
        parts.append(f"acks SYN + {acked} bytes" if acked else "acks SYN only")
    return ", ".join(parts)


def rungs(packets: Iterable[CapturedPacket], client: Endpoint, server: Endpoint) -> list[Rung]:
    """The segments of the connection between ``client`` and ``server``, times from the first."""
    out: list[Rung] = []
    start: float | None = None
    client_isn: int | None = None
    for captured in packets:
        try:
            ip, seg = parse_tcp_packet(captured.data)
        except MalformedPacket:
            continue  # not TCP (neighbour discovery, say), or damaged on purpose
        src, dst = Endpoint(str(ip.src), seg.src_port), Endpoint(str(ip.dst), seg.dst_port)
        if (src, dst) not in ((client, server), (server, client)):
            continue
        from_client = src == client
        if from_client and seg.flags & Flags.SYN and client_isn is None:
            client_isn = seg.seq
        start = captured.time if start is None else start
        out.append(
            Rung(
                captured.time - start, from_client, _label(seg, None if from_client else client_isn)
            )
        )
    return out


def draw(rungs: list[Rung], client: Endpoint, server: Endpoint, *, width: int = 60) -> str:
    """The ladder as text: one arrow a segment, labelled, between the client and the server."""
    left, right = f"client {client}", f"server {server}"
    lines = [f"{'sent at':>9}  {left}{right:>{width - len(left)}}"]
    for rung in rungs:
        text = f" {rung.label} "
        if rung.from_client:
            arrow = ("─" + text).ljust(width - 1, "─") + "▶"
        else:
            arrow = ("◀─" + text).ljust(width, "─")
        lines.append(f"{rung.time * 1000:>6.1f} ms  {arrow}")
    return "\n".join(lines)
