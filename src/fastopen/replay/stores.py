"""Where a replay guard records first deliveries: in memory, in an SQLite file, or in Redis.

Every store does two things, each in one step (one round trip for Redis):

- :meth:`Store.record` sets ``key`` to ``value`` for ``ttl`` seconds unless a live entry is
  there already, and returns that earlier entry's value (or None: this is the first delivery);
- :meth:`Store.lookup` returns the live entry's value, or None.

and tells since when its memory is continuous (:meth:`Store.since`): a guard quarantines SYN
data for one window after that moment, since what the store forgot before it cannot be checked.

A store that cannot answer raises :class:`StoreUnavailable` (the guard then applies its failure
policy); nothing else escapes from a check.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastopen.errors import FastOpenError

log = logging.getLogger(__name__)

#: Entries the memory store holds at most by default (about 40 MB of Python objects).
MEMORY_ENTRIES = 262_144
#: Key prefix in shared stores; the fingerprint is the Redis Cluster hash tag.
KEY_PREFIX = "fastopen:replay:"


class StoreUnavailable(Exception):
    """The store could not answer (unreachable, timed out, full)."""


class StoreFull(StoreUnavailable):
    """The memory store holds its maximum of live entries: a new one cannot be recorded."""


class ReplayStoreError(FastOpenError, ValueError):
    """A replay store named wrongly (``--replay-guard``, ``replay_guard=``)."""


class Store(Protocol):
    """What a replay guard needs of a store."""

    #: How the store is named in reports and logs (``memory``, ``sqlite:PATH``, a Redis URL).
    name: str
    #: Whether records survive a restart of the server process (quarantine is needed otherwise).
    persistent: bool

    async def record(self, key: bytes, value: str, ttl: float) -> str | None: ...

    async def lookup(self, key: bytes) -> str | None: ...

    async def since(self) -> float:
        """The wall-clock time (``time.time()``) since which the store forgot nothing."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """Records of one process, bounded: at most ``max_entries`` live ones.

    Entries expire in the order they were made (one guard, one window); when every slot holds a
    live entry, :meth:`record` raises :class:`StoreFull` rather than forget one early, so a flood
    of SYN data cannot push a real record out before its window ends.
    """

    name = "memory"
    persistent = False

    def __init__(self, max_entries: int = MEMORY_ENTRIES) -> None:
        if max_entries < 1:
            raise ReplayStoreError(f"a memory store needs room for an entry, not {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[float, str]] = OrderedDict()
        self._born = time.time()

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires, _) = next(iter(entries.items()))
            if expires > now:
                return
            del entries[key]

    async def record(self, key: bytes, value: str, ttl: float) -> str | None:
        now = time.monotonic()
        old = self._entries.get(key)
        if old is not None and old[0] > now:
            return old[1]
        self._expire(now)
        if len(self._entries) >= self.max_entries:
            raise StoreFull(f"the memory store holds {self.max_entries} live entries")
        self._entries.pop(key, None)
        self._entries[key] = (now + ttl, value)
        return None

    async def lookup(self, key: bytes) -> str | None:
        old = self._entries.get(key)
        return old[1] if old is not None and old[0] > time.monotonic() else None

    async def since(self) -> float:
        return self._born

    async def close(self) -> None:
        self._entries.clear()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records
    (key BLOB PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""
_RECORD = """
INSERT INTO records VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE
    SET value = excluded.value, expires = excluded.expires WHERE records.expires <= ?
RETURNING 1
"""
#: Records between two sweeps of expired rows.
SWEEP_EVERY = 1024


class SqliteStore:
    """Records in an SQLite file: shared by the processes of one host, kept across restarts.

    Each :meth:`record` is one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE expired RETURNING``
    statement, its own transaction (processes take turns on the file's write lock), and a
    ``SELECT`` of the earlier row when one was live; the file is in WAL mode (SQLite 3.35+).
    Expiry uses wall-clock time, since processes share the file.
    """

    persistent = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 1.0) -> None:
        self.path = Path(path)
        self.name = f"sqlite:{self.path}"
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (time.time(),))
        except sqlite3.Error as exc:
            raise ReplayStoreError(
                f"cannot open the replay store {self.path}: {exc}",
                hint="is the folder there and writable?",
            ) from None
        self._since: float = self._db.execute(
            "SELECT value FROM meta WHERE name = 'created'"
        ).fetchone()[0]
        self._records = 0

    async def record(self, key: bytes, value: str, ttl: float) -> str | None:
        now = time.time()
        db = self._db
        try:
            # one statement, one transaction: insert, or take over an expired row
            written = db.execute(_RECORD, (key, value, now + ttl, now)).fetchone()
            if written is not None:
                self._records += 1
                if self._records % SWEEP_EVERY == 0:
                    db.execute("DELETE FROM records WHERE expires <= ?", (now,))
                return None
            row = db.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.name}: {exc}") from exc
        # a live row was there (gone since only if it expired meanwhile: then it was live)
        return "" if row is None else str(row[0])

    async def lookup(self, key: bytes) -> str | None:
        try:
            row = self._db.execute(
                "SELECT value FROM records WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.name}: {exc}") from exc
        return None if row is None else str(row[0])

    async def since(self) -> float:
        return self._since

    async def close(self) -> None:
        self._db.close()


#: Redis timeouts (seconds) unless the URL sets its own (``?socket_timeout=``).
REDIS_TIMEOUT = 0.25


class RedisStore:
    """Records in Redis, shared by every server of a farm (Redis 7.0 or later).

    A record is one ``SET key value NX PX ttl GET`` (set unless present, return what was there),
    a lookup one ``GET``: one round trip each, on one connection (commands from concurrent
    checks take turns on it; redis-py's pool costs more per command than the round trip). Keys
    are ``fastopen:replay:{<fingerprint>}``, one key a command, so they work on Redis Cluster;
    the hash tag keeps anything later stored for the same fingerprint in the same slot.
    Continuity comes from ``INFO server`` (the uptime): a Redis that restarted forgot its
    records, unless it persists them (then say ``persistent=True``).
    """

    def __init__(self, url: str, *, persistent: bool = False) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:
            raise ReplayStoreError(
                "a Redis replay store needs the redis client",
                hint="pip install 'fastopen[redis]'",
            ) from None
        self.name = url
        self.persistent = persistent
        # One connection (no pool to take from and give back on every check), and no retries:
        # when Redis does not answer, the guard's failure policy decides at once.
        options: dict[str, Any] = {"single_connection_client": True, "retry": Retry(NoBackoff(), 0)}
        query = urlsplit(url).query
        if "socket_timeout" not in query:
            options["socket_timeout"] = REDIS_TIMEOUT
        if "socket_connect_timeout" not in query:
            options["socket_connect_timeout"] = REDIS_TIMEOUT
        try:
            self._redis: Any = aioredis.from_url(url, **options)
        except ValueError as exc:
            raise ReplayStoreError(
                f"not a Redis URL: {url!r} ({exc})",
                hint="redis://host:port/db, rediss://..., or unix:///path/to/socket",
            ) from None
        self._errors = (OSError, asyncio.TimeoutError, aioredis.RedisError)

    @staticmethod
    def key(key: bytes) -> str:
        return f"{KEY_PREFIX}{{{key.hex()}}}"

    async def record(self, key: bytes, value: str, ttl: float) -> str | None:
        try:
            old = await self._redis.execute_command(
                "SET", self.key(key), value, "NX", "PX", max(1, int(ttl * 1000)), "GET", get=True
            )
        except self._errors as exc:
            raise StoreUnavailable(f"{self.name}: {exc}") from exc
        return None if old is None else bytes(old).decode()

    async def lookup(self, key: bytes) -> str | None:
        try:
            old = await self._redis.get(self.key(key))
        except self._errors as exc:
            raise StoreUnavailable(f"{self.name}: {exc}") from exc
        return None if old is None else bytes(old).decode()

    async def since(self) -> float:
        try:
            info = await self._redis.info("server")
        except self._errors as exc:
            raise StoreUnavailable(f"{self.name}: {exc}") from exc
        if self.persistent:
            return 0.0
        return time.time() - float(info["uptime_in_seconds"])

    async def close(self) -> None:
        await self._redis.aclose()


def open_store(spec: str | Store) -> Store:
    """A store by name: ``memory``, ``sqlite:PATH``, or a Redis URL (``redis://``, ``rediss://``,
    ``unix://``), or a store object as it is."""
    if not isinstance(spec, str):
        return spec
    if spec == "memory":
        return MemoryStore()
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not path:
            raise ReplayStoreError(
                "sqlite: needs a path", hint="sqlite:/var/lib/fastopen/replay.db"
            )
        return SqliteStore(path)
    if spec.split(":", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(spec)
    raise ReplayStoreError(
        f"unknown replay store {spec!r}",
        hint="memory, sqlite:PATH, or a Redis URL (redis://host:port, unix:///path)",
    )
