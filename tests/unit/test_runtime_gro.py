"""GRO in software: the runs of segments of one read batch reach the engine joined as Linux's
``tcp_gro_receive`` joins them, everything else as it came, in order; and a stack receiving a
flight through a packet socket pair (one record a packet, as a TUN device carries them) makes
one engine pass, and one ACK, per run of it. Pure ACKs that a later one of the batch makes
redundant are filtered as CAKE's ack-filter does (those with SACK blocks only once the batch
is long), and TCP ends where all of them would have left it."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from hostspy import spy_on_receive

from fastopen.errors import MalformedPacket
from fastopen.pcap import read_pcap
from fastopen.runtime import UserspaceStack
from fastopen.runtime.gro import BEHIND, Gro
from fastopen.wire import (
    Flags,
    Mss,
    Nop,
    Sack,
    TcpOption,
    TcpSegment,
    Timestamps,
    ip_packet,
    parse_ipv4_tcp,
    parse_tcp_packet,
    split_segment,
)

A, B, C = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"), IPv4Address("198.18.0.3")
MSS = 1448
OPTS = (Nop(), Nop(), Timestamps(1000, 2000))
ACK, PSH, FIN, CWR = Flags.ACK, Flags.PSH, Flags.FIN, Flags.CWR

Delivered = tuple[IPv4Address, IPv4Address, TcpSegment, float, int]


def data(
    seq: int,
    size: int,
    flags: Flags = ACK,
    window: int = 500,
    ack: int = 7,
    options: tuple[Nop | Timestamps, ...] = OPTS,
) -> TcpSegment:
    return TcpSegment(40000, 80, seq, ack, flags, window, options, bytes([seq & 0xFF]) * size)


def through(segments: list[TcpSegment], src: IPv4Address = A) -> list[Delivered]:
    """What ``segments`` become through GRO, given as parsed segments; checked to be what they
    become as packets, the next segments of a run taken from their bytes (:meth:`Gro.join`)."""
    delivered: list[Delivered] = []
    gro = Gro(lambda *seg: delivered.append(seg))
    for i, seg in enumerate(segments):
        gro.add(src, B, seg, float(i))
    gro.flush()
    assert from_packets([ip_packet(src, B, seg) for seg in segments]) == delivered
    return delivered


def from_packets(packets: list[bytes]) -> list[Delivered]:
    """``packets`` through GRO as the stack gives them: joined from their bytes, or parsed
    (those that do not parse are dropped) and added."""
    delivered: list[Delivered] = []
    gro = Gro(lambda *seg: delivered.append(seg))
    for i, packet in enumerate(packets):
        if gro.join(packet, float(i)):
            continue
        try:
            parsed = parse_ipv4_tcp(packet, [B])
        except MalformedPacket:
            continue
        if parsed is None:  # not a right IPv4 header
            continue
        gro.add(*parsed, float(i), packet)
    gro.flush()
    return delivered


def test_a_run_is_one_segment_of_its_count_that_cuts_back_exactly() -> None:
    run = [data(1 + i * MSS, MSS) for i in range(5)] + [data(1 + 5 * MSS, 700, ACK | PSH)]
    [(src, dst, joined, now, segs)] = through(run)
    assert (src, dst, now, segs) == (A, B, 0.0, 6)
    assert joined.seq == 1 and joined.flags == ACK | PSH and joined.options == OPTS
    assert joined.payload == b"".join(seg.payload for seg in run)
    assert split_segment(joined, MSS) == run  # what a GSO device would cut: the same segments


def test_what_tcp_gro_receive_does_not_join_comes_as_it_came_in_order() -> None:
    first = data(1, MSS)
    nxt = 1 + MSS
    cases = {
        "window": data(nxt, MSS, window=501),
        "ack": data(nxt, MSS, ack=8),
        "options": data(nxt, MSS, options=(Nop(), Nop(), Timestamps(1001, 2000))),
        "gap": data(nxt + 1, MSS),
        "longer": data(nxt, MSS + 1),
        "cwr": data(nxt, MSS, ACK | CWR),
        "pure ack": data(nxt, 0),
        "syn": data(nxt, MSS, Flags.SYN | ACK),
        "ecn": TcpSegment(40000, 80, nxt, 7, ACK, 500, OPTS, b"x" * MSS, 0, 0, 3),  # CE
    }
    for name, second in cases.items():
        got = [(seg, segs) for _, _, seg, _, segs in through([first, second])]
        assert got == [(first, 1), (second, 1)], name
    # another flow's segment between: each as it came, the order kept
    other = [(src, seg) for src, _, seg, _, _ in through([first, data(nxt, MSS)], src=C)]
    assert len(other) == 1  # one flow: joined
    mixed = Gro(lambda *seg: order.append((seg[0], seg[2].seq)))
    order: list[tuple[IPv4Address, int]] = []
    for src, seg in ((A, first), (C, data(1, MSS)), (A, data(nxt, MSS))):
        mixed.add(src, B, seg, 0.0)
    mixed.flush()
    assert order == [(A, 1), (C, 1), (A, nxt)]


def test_a_run_ends_at_psh_fin_a_shorter_segment_and_64_kb() -> None:
    ended = [data(1, MSS), data(1 + MSS, MSS, ACK | FIN), data(1 + 2 * MSS, MSS)]
    assert [segs for *_, segs in through(ended)] == [2, 1]
    short = [data(1, MSS), data(1 + MSS, 100), data(1 + MSS + 100, MSS)]
    assert [segs for *_, segs in through(short)] == [2, 1]
    many = [data(1 + i * MSS, MSS) for i in range(60)]
    assert [segs for *_, segs in through(many)] == [45, 15]  # 45 x 1,448 bytes: below 64 KB
    # a PSH segment alone (nothing held) is never held; a pure ACK is, until the next segment
    alone = Gro(lambda *seg: held.append(seg[2]))
    held: list[TcpSegment] = []
    alone.add(A, B, data(1, MSS, ACK | PSH), 0.0)
    alone.add(A, B, data(1 + MSS, 0), 0.0)
    assert len(held) == 1
    alone.add(A, B, data(1 + MSS, MSS, ACK | PSH), 0.0)
    assert len(held) == 3


def test_a_packet_whose_checksums_are_wrong_is_never_joined() -> None:
    run = [ip_packet(A, B, data(1 + i * MSS, MSS)) for i in range(3)]
    bad_tcp = run[1][:-1] + bytes([run[1][-1] ^ 1])  # a payload bit flipped
    bad_ip = run[1][:10] + bytes([run[1][10] ^ 1]) + run[1][11:]  # the IP header's checksum
    for bad in (bad_tcp, bad_ip):
        got = [(seg.seq, segs) for _, _, seg, _, segs in from_packets([run[0], bad, run[2]])]
        assert got == [(1, 1), (1 + 2 * MSS, 1)]  # the bad one dropped, the run broken there
    assert [segs for *_, segs in from_packets(run)] == [3]
    gro = Gro(lambda *seg: None)
    first = parse_ipv4_tcp(run[0], [B])
    assert first is not None
    gro.add(*first, 0.0, run[0])
    assert gro.join(run[1], 1.0) and gro.join(run[2], 2.0)  # taken from their bytes
    assert not gro.join(bad_tcp, 3.0) and not gro.join(bad_ip, 3.0)


def _with_ip(packet: bytes, offset: int, value: int) -> bytes:
    """``packet`` with byte ``offset`` of its IPv4 header set to ``value``, the header's
    checksum made right again."""
    header = bytearray(packet[:20])
    header[offset] = value
    header[10:12] = b"\0\0"
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, 20, 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = (~total & 0xFFFF).to_bytes(2, "big")
    return bytes(header) + packet[20:]


def test_a_packet_whose_df_or_ttl_differs_is_not_joined_nor_a_fragment_held() -> None:
    # inet_gro_receive: TTL, TOS and DF must be the first's; a fragment is never held
    run = [ip_packet(A, B, data(1 + i * MSS, MSS)) for i in range(3)]
    assert run[0][6] == 0x40  # DF
    for offset, value in ((6, 0x00), (8, 63)):  # DF cleared; the TTL one less
        changed = [run[0]] + [_with_ip(packet, offset, value) for packet in run[1:]]
        got = [(seg.seq, segs) for _, _, seg, _, segs in from_packets(changed)]
        assert got == [(1, 1), (1 + MSS, 2)]  # those that differ make a run of their own
    gro = Gro(lambda *seg: None)
    fragment = _with_ip(run[0], 6, 0x60)  # DF and more fragments
    first = parse_ipv4_tcp(run[0], [B])
    assert first is not None
    gro.add(*first, 0.0, fragment)
    assert not gro.join(run[1], 1.0)  # not taken from its bytes after a fragment's


def test_a_flight_read_in_one_batch_takes_one_pass_and_one_ack(tmp_path: Path) -> None:
    capture = tmp_path / "client.pcap"
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (a, b):
        end.setblocking(False)
    client = UserspaceStack(a.detach(), ["198.18.0.1"], pcap=capture)
    client.learn_paths = False
    server = UserspaceStack(b.detach(), ["198.18.0.2"])
    body = bytes(range(256)) * 40  # 10,240 bytes: 8 segments, within the initial window
    passes: list[tuple[int, int]] = []  # (payload bytes, segments) of each engine pass with data

    def counted(src: Any, dst: Any, seg: TcpSegment, now: float, segs: int) -> None:
        if seg.payload:
            passes.append((len(seg.payload), segs))

    spy_on_receive(client, counted)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        writer.write(body)
        await writer.drain()
        await asyncio.sleep(0.1)  # the client's ACKs arrive before the FIN
        writer.close()

    async def main() -> bytes:
        async with await server.start_server(handler, "198.18.0.2", 80):
            reader, writer = await client.open_connection("198.18.0.2", 80)
            writer.write(b"hello")
            answer = await reader.read()
            writer.close()
            return answer

    with client, server:
        assert asyncio.run(main()) == body
    segments = [parse_tcp_packet(p.data)[1] for p in read_pcap(capture)]
    flight = [seg for seg in segments if seg.src_port == 80 and seg.payload]
    assert len(flight) == 8  # eight packets on the wire, as they came
    # the fifth carries PSH (Linux's forced push at half the window): it ends a run
    assert [seg.flags for seg in flight].index(ACK | PSH) == 4
    assert passes == [(5 * 1448, 5), (len(body) - 5 * 1448, 3)]  # one engine pass per run
    start, end = flight[0].seq, flight[-1].seq + len(flight[-1].payload)
    acks = [
        seg.ack
        for seg in segments
        if seg.dst_port == 80 and not seg.payload and start < seg.ack <= end
    ]
    # one ACK per run (in quick ACK mode, one per segment without)
    assert acks == [start + 5 * 1448, end]


def pure(ack: int, *blocks: tuple[int, int], ts: int = 1000, **kw: Any) -> TcpSegment:
    """The peer's pure ACK of ``ack``, SACKing ``blocks``, timestamps (``ts``, 2000)."""
    options: tuple[TcpOption, ...] = (Nop(), Nop(), Timestamps(ts, 2000))
    if blocks:
        options += (Nop(), Nop(), Sack(blocks))
    return data(1, 0, ack=ack, options=options, **kw)


def test_pure_acks_that_a_later_one_makes_redundant_are_filtered() -> None:
    # cake_ack_filter: a later pure ACK of the flow that acknowledges more, with timestamps
    # no older, stands for the ones before it; it comes at its own time, as a stretch ACK
    acks = [pure(1 + i * 2 * MSS, ts=1000 + i) for i in range(1, 6)]
    delivered: list[Delivered] = []
    gro = Gro(lambda *seg: delivered.append(seg))
    for i, seg in enumerate(acks):
        gro.add(A, B, seg, float(i))
    assert delivered == []  # the last is held until the batch ends
    gro.flush()
    assert delivered == [(A, B, acks[-1], 4.0, 1)] and gro.filtered == 4
    assert from_packets([ip_packet(A, B, seg) for seg in acks]) == delivered
    # SACK: the duplicate ACKs of a loss, each SACKing more, all reach TCP (Linux's takes them
    # one by one: new data on the first ones, recovery at the third), and the ACK before them
    sacked = [pure(1001), pure(1001, (3001, 4001)), pure(1001, (3001, 5001)), pure(5001)]
    assert [seg for _, _, seg, _, _ in through(sacked)] == sacked
    # ... unless the batch has brought more than BEHIND segments (the stack is behind): then as
    # in CAKE, a later ACK that SACKs all the earlier did, and more at the same ACK, stands for
    # it; only its SACK blocks cover the earlier's (a block below its ACK may be a D-SACK)
    ahead = [pure(1 + i, ts=900) for i in range(BEHIND)]
    got = [seg for _, _, seg, _, _ in through(ahead + sacked)]
    assert got == sacked[2:]


def test_what_the_ack_filter_keeps() -> None:
    # nothing that would tell TCP something: duplicate ACKs count, a window update is one
    first = pure(1001)
    cases = {
        "duplicate": pure(1001),
        "window update": pure(1001, window=900),
        "older ack": pure(1),
        "older timestamp": pure(2001, ts=999),
        "no timestamp": data(1, 0, ack=2001, options=()),
        "ece": pure(2001, flags=ACK | Flags.ECE),
        "less sacked": pure(1001, (3001, 4001)),
        "sack not covered": pure(2001, (5001, 6001)),
        "data": data(1, 100, ack=2001),
        "fin": pure(2001, flags=ACK | FIN),
    }
    for name, second in cases.items():
        if name == "less sacked":
            first, second = pure(1001, (3001, 5001)), second
        elif name == "sack not covered":
            first = pure(1001, (3001, 4001))
        else:
            first = pure(1001)
        got = [seg for _, _, seg, _, _ in through([first, second])]
        assert got == [first, second], name
    # an option the filter does not know of (cake_tcph_may_drop: MSS, window scale...)
    odd = data(1, 0, ack=1001, options=(Mss(1000),))  # type: ignore[arg-type]
    assert [seg for _, _, seg, _, _ in through([odd, pure(2001)])] == [odd, pure(2001)]
    # another flow's segment between: each as it came
    order: list[tuple[IPv4Address, int]] = []
    mixed = Gro(lambda *seg: order.append((seg[0], seg[2].ack)))
    for src, seg in ((A, pure(1001)), (C, pure(1001)), (A, pure(2001))):
        mixed.add(src, B, seg, 0.0)
    mixed.flush()
    assert order == [(A, 1001), (C, 1001), (A, 2001)] and mixed.filtered == 0


def test_the_common_pure_ack_is_filtered_from_its_bytes() -> None:
    # IPv4, timestamps alone: the later ACK replaces the one held without being parsed, and
    # what is delivered is what the parsed path delivers (from_packets checks it against add)
    acks = [pure(1 + i * 2 * MSS, ts=1000 + i, window=500 + i) for i in range(1, 6)]
    packets = [ip_packet(A, B, seg) for seg in acks]
    delivered: list[Delivered] = []
    gro = Gro(lambda *seg: delivered.append(seg))
    first = parse_ipv4_tcp(packets[0], [B])
    assert first is not None
    gro.add(*first, 0.0, packets[0])
    assert all(gro.join(packet, float(i)) for i, packet in enumerate(packets[1:], 1))
    gro.flush()
    assert delivered == [(A, B, acks[-1], 4.0, 1)] and gro.filtered == 4
    assert from_packets(packets) == delivered
    # what it leaves to the parsed path: a bad checksum (then dropped, the ACK held stays
    # held), a duplicate, an older timestamp, another TTL, SACK, ECE, another flow
    bad = packets[1][:-1] + bytes([packets[1][-1] ^ 1])
    others = {
        "bad checksum": bad,
        "duplicate": ip_packet(A, B, pure(1001)),
        "older timestamp": ip_packet(A, B, pure(3001, ts=999)),
        "ttl": _with_ip(ip_packet(A, B, pure(3001)), 8, 7),
        "sack": ip_packet(A, B, pure(3001, (5001, 6001))),
        "ece": ip_packet(A, B, pure(3001, flags=ACK | Flags.ECE)),
        "flow": ip_packet(C, B, pure(3001)),
        "data": ip_packet(A, B, data(1, 100, ack=3001)),
    }
    for name, packet in others.items():
        gro = Gro(lambda *seg: None)
        held = ip_packet(A, B, pure(1001))
        parsed = parse_ipv4_tcp(held, [B])
        assert parsed is not None
        gro.add(*parsed, 0.0, held)
        assert not gro.join(packet, 1.0), name
    assert [seg.ack for _, _, seg, _, _ in from_packets([packets[0], bad, packets[2]])] == [
        acks[2].ack
    ]
    # the TTL case still goes, parsed: the filter does not look at IP (cake_ack_filter)
    ttl = [packets[0], _with_ip(packets[1], 8, 7)]
    assert [seg.ack for _, _, seg, _, _ in from_packets(ttl)] == [acks[1].ack]
