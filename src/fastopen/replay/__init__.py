"""The SYN-data replay guard: SYN data delivered once across a server farm (docs/replay.md).

TFO may deliver SYN data twice: a retransmitted SYN that a load balancer sends to another server
after the first server's SYN-ACK was lost, a SYN duplicated by the network or replayed by an
attacker, a server that restarted. :class:`ReplayGuard` records each first delivery of SYN data
in a store (:class:`MemoryStore`, :class:`SqliteStore`, :class:`RedisStore` for a farm) and flags
a connection that comes again; ``fastopen.start_server(..., replay_guard=guard)`` consults it for
every connection, and ``fastopen serve --replay-guard`` answers a suspected replay of a request
that is not safe to replay with ``425 Too Early`` (RFC 8470).
"""

from fastopen.replay.guard import WINDOW, Arrival, Reason, ReplayGuard, Verdict
from fastopen.replay.stores import (
    MemoryStore,
    RedisStore,
    ReplayStoreError,
    SqliteStore,
    Store,
    StoreFull,
    StoreUnavailable,
    open_store,
)

__all__ = [
    "WINDOW",
    "Arrival",
    "MemoryStore",
    "Reason",
    "RedisStore",
    "ReplayGuard",
    "ReplayStoreError",
    "SqliteStore",
    "Store",
    "StoreFull",
    "StoreUnavailable",
    "Verdict",
    "open_store",
]
