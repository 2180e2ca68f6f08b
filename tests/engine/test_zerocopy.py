"""MSG_ZEROCOPY's skbs (Linux tcp_sendmsg_locked, skb_zerocopy_iter_stream): each page of each
buffer of a sendmsg is a page fragment of the skb, which holds at most MAX_SKB_FRAGS (17); an
skb out of fragments gets PSH and the data goes on in a new one, and no transmission joins an
skb with zerocopy pages to its neighbour (tcp_grow_skb: skb_shift refuses them).
tests/packetdrill/server-zerocopy-frags.pkt shows the same on the kernel."""

from __future__ import annotations

from engine_support import CLIENT, ISN, PEER_ISN, SERVER, A, P, out, seg
from test_tcp import connected

from fastopen.engine import EngineSocket, Host
from fastopen.engine.socket import MSG_ZEROCOPY, SO_ZEROCOPY, SOL_SOCKET


def zerocopy_client(**kw: object) -> tuple[Host, EngineSocket]:
    h, sock, _ = connected(**kw)
    sock.setsockopt(SOL_SOCKET, SO_ZEROCOPY, 1)
    return h, sock


def test_each_buffer_is_a_fragment() -> None:
    """18 buffers of one byte: copied, one segment; pinned, 17 fragments fill an skb and the
    18th byte goes in the next, both with PSH."""
    for flags, lengths in ((0, [18]), (MSG_ZEROCOPY, [17, 1])):
        h, sock = zerocopy_client()
        assert sock.sendmsg([bytes(1)] * 18, flags, None, 0.2) == 18
        segs = out(h)
        acked = ISN + 1 + len(segs[0].payload)
        h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, acked), 0.3)
        segs += out(h)  # a small segment waits for the ACK of the one before (Nagle)
        assert [len(s.payload) for s in segs] == lengths
        assert all(s.flags & P for s in segs)


def test_each_page_is_a_fragment() -> None:
    """A buffer of two pages is two fragments: after 16 of one byte the skb takes its first
    page only (16 + 4096 bytes, PSH), the second is in the next skb."""
    h, sock = zerocopy_client(tso=True)
    assert sock.sendmsg([bytes(1)] * 16 + [bytes(8192)], MSG_ZEROCOPY, None, 0.2) == 8208
    segs = out(h)
    assert [len(s.payload) for s in segs[:3]] == [2000, 2000, 112]
    assert segs[2].flags & P


def test_skb_with_zerocopy_pages_is_not_grown() -> None:
    """A transmission that ends an skb's data takes none of the next one's when that holds
    zerocopy pages (tcp_grow_skb's skb_shift refuses), as it does from a copied one."""

    def sent(flags: int) -> list[int]:
        h, sock = zerocopy_client(tso=True, min_tso_segs=5)
        # skbs of 32000 (the size goal) from the first 10000 sent, then one of 3000 + 100
        assert sock.send(bytes(45000), 0.2) == 45000
        lengths = [len(s.payload) for s in out(h)]
        assert sock.sendmsg([bytes(100)], flags, None, 0.2) == 100
        now = 0.3
        while sum(lengths) < 45100:
            h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1 + sum(lengths)), now)
            lengths += [len(s.payload) for s in out(h)]
            now += 0.1
        return lengths[-3:]

    assert sent(MSG_ZEROCOPY) == [5000, 2000, 3100]
    assert sent(0) == [5000, 5000, 100]
