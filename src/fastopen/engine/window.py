"""Socket buffers and the windows they give, as Linux 6.x sizes them (``net/ipv4/tcp_input.c``).

- the window a buffer's space gives: :func:`win_from_space` (tcp_win_from_space with the default
  scaling ratio: half of a buffer is payload; the engine has no skb truesize to measure it, so
  it keeps Linux's default, which is also what a SYN's window assumes);
- receive-buffer autotuning (dynamic right-sizing): :class:`ReceiveSpace` measures what the
  application read in each receiver RTT (tcp_rcv_space_adjust, with the receiver's RTT from
  timestamps or from a window's worth of data, tcp_rcv_rtt_measure_ts / tcp_rcv_rtt_measure)
  and grows the buffer to twice that and more while it grows, up to ``tcp_rmem[2]``;
- send-buffer growth: :func:`sndbuf_for` (tcp_sndbuf_expand: room for twice the congestion
  window, counted in the memory each segment takes); what an skb of the send queue costs
  besides its data (:data:`SKB_TRUESIZE`, which the connection counts against the buffer as
  Linux counts sk_wmem_queued).

The connection (:mod:`.tcb`) keeps the receive window itself (rcv_ssthresh, window_clamp and the
window selection); the buffers are the socket's, as ``sk_rcvbuf`` and ``sk_sndbuf`` are.
"""

from __future__ import annotations

import functools

from fastopen.engine.seq import HALF, MASK, seq_lt

#: Linux SOCK_MIN_RCVBUF and SOCK_MIN_SNDBUF (TCP_SKB_MIN_TRUESIZE, twice it): the least an
#: SO_RCVBUF or SO_SNDBUF gives.
SOCK_MIN_RCVBUF = 2304
SOCK_MIN_SNDBUF = 4608
#: Linux sk_userlocks: SO_SNDBUF or SO_RCVBUF set by the application turns that buffer's
#: autotuning off (SOCK_SNDBUF_LOCK, SOCK_RCVBUF_LOCK).
SNDBUF_LOCK = 1
RCVBUF_LOCK = 2
#: Linux TCP_INIT_CWND.
INIT_CWND = 10
#: Linux MAX_TCP_HEADER, SKB_DATA_ALIGN(sizeof(struct skb_shared_info)) and
#: SKB_DATA_ALIGN(sizeof(struct sk_buff)) of this machine's kernel (6.18, x86-64; measured:
#: tcp_sndbuf_expand's power of two is 2,048 up to an MSS of 1,536, 4,096 from 1,537).
MAX_TCP_HEADER = 192
SHINFO_SIZE = 320
SKB_SIZE = 256
#: Linux tcp_stream_alloc_skb: the truesize of a new skb before its data, SKB_TRUESIZE of its
#: head's end offset, which comes to the head's size and the sk_buff. alloc_skb_fclone
#: (MAX_TCP_HEADER) takes the head from skb_small_head_cache, of SKB_HEAD_ALIGN(MAX_TCP_HEADER)
#: bytes (512), a cache line more (L1_CACHE_BYTES, 64) as that is a power of two. Each byte
#: copied into the skb adds one (skb_copy_to_page_nocache). 832, as measured: SO_MEMINFO's
#: wmem_queued with one skb of one byte queued is 833.
SKB_TRUESIZE = MAX_TCP_HEADER + SHINFO_SIZE + 64 + SKB_SIZE
#: tcp_grow_window only for segments of at least this many bytes (tcp_event_data_recv).
GROW_MIN_LEN = 128


def win_from_space(space: int) -> int:
    """Linux tcp_win_from_space at TCP_DEFAULT_SCALING_RATIO: the window ``space`` bytes of
    buffer give (half)."""
    return space >> 1 if space > 0 else 0


def space_from_win(win: int) -> int:
    """Linux tcp_space_from_win: the buffer a window of ``win`` needs (twice)."""
    return win << 1


@functools.lru_cache(maxsize=256)
def sndbuf_for(mss: int, cwnd: int, per_cwnd: int = 2) -> int:
    """Linux tcp_sndbuf_expand: twice (``per_cwnd``: the congestion control's sndbuf_expand)
    the larger of TCP_INIT_CWND and ``cwnd`` segments, each costing a power-of-two head for
    ``mss`` bytes and its sk_buff (46,080 for 1,460 and 10; cached: connections share the few
    sizes, and an idle one holds no int of its own)."""
    per_mss = (1 << (mss + MAX_TCP_HEADER + SHINFO_SIZE - 1).bit_length()) + SKB_SIZE
    return per_cwnd * max(INIT_CWND, cwnd) * per_mss


@functools.lru_cache(maxsize=256)
def established_clamp(clamp: int, rcvbuf: int, advmss: int) -> int:
    """Linux tcp_init_buffer_space's window clamp: at most the buffer's full space, less one
    segment when the clamp would reach it ("force reservation of one segment"; 64,088 for the
    default 131,072 and 1,448; cached as :func:`sndbuf_for`)."""
    maxwin = win_from_space(rcvbuf)
    clamp = min(clamp, maxwin)
    if clamp > 2 * advmss and clamp + advmss > maxwin:
        clamp = max(2 * advmss, maxwin - advmss)
    return clamp


class ReceiveSpace:
    """Linux ``rcvq_space`` and ``rcv_rtt_est`` of one connection: made with its first data
    (an idle connection does without)."""

    __slots__ = ("copied", "last_tsecr", "rtt", "rtt_at", "rtt_seq", "space", "time")

    def __init__(self, space: int, copied: int, now: float) -> None:
        self.space = space  # rcvq_space.space: bytes read in the last measured RTT
        self.copied = copied  # rcvq_space.seq: bytes read when this measure started
        self.time = now  # rcvq_space.time
        self.rtt = 0.0  # rcv_rtt_est.rtt_us >> 3: the receiver's RTT estimate (0: none yet)
        self.rtt_seq = 0  # rcv_rtt_est.seq: the window's end a measure waits for
        self.rtt_at: float | None = None  # rcv_rtt_est.time
        self.last_tsecr = 0  # rcv_rtt_last_tsecr

    def _update(self, sample: float, win_dep: bool) -> None:
        """Linux tcp_rcv_rtt_update: a timestamp sample is averaged in (1/8); a window's is an
        upper bound (the sender may not have filled the window), so only a smaller one counts."""
        if not self.rtt:
            self.rtt = sample
        elif win_dep:
            self.rtt = min(self.rtt, sample)
        else:
            self.rtt += (sample - self.rtt) / 8

    def measure_window(self, rcv_nxt: int, rcv_wnd: int, now: float) -> None:
        """Linux tcp_rcv_rtt_measure: the time a window's worth of data took to arrive."""
        if self.rtt_at is not None:
            if seq_lt(rcv_nxt, self.rtt_seq):
                return
            self._update(max(now - self.rtt_at, 1e-6), True)
        self.rtt_seq = (rcv_nxt + rcv_wnd) & MASK
        self.rtt_at = now

    def measure_ts(self, tsecr: int, ticks: int) -> None:
        """Linux tcp_rcv_rtt_measure_ts: a full segment echoing a new TSval of ours, ``ticks``
        (ms) after we sent it (no sample for 0 ticks or a TSval from the future)."""
        if tsecr == self.last_tsecr:
            return
        self.last_tsecr = tsecr
        ticks &= MASK
        if 0 < ticks < HALF:
            self._update(ticks / 1000, False)

    def adjust(self, copied: int, now: float, advmss: int, rcvbuf: int, limit: int) -> int:
        """Linux tcp_rcv_space_adjust, after the application read (``copied``: every byte it
        has read): once per receiver RTT, a reader that took more than in the RTT before gets
        a buffer for twice that plus 16 segments, more still while its rate grows (the sender
        in slow start), up to ``limit`` (tcp_rmem[2]; 0: no autotuning). Returns the buffer."""
        if not self.rtt or now - self.time < self.rtt:
            return rcvbuf
        got = copied - self.copied
        if got > self.space:
            if limit:
                rcvwin = 2 * got + 16 * advmss
                rcvwin += 2 * (rcvwin * (got - self.space) // self.space)
                rcvbuf = max(rcvbuf, min(space_from_win(rcvwin), limit))
            self.space = got
        self.copied = copied
        self.time = now
        return rcvbuf
