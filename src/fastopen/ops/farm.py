"""Farm keys: every server behind a load balancer (or DSR) derives the same TFO keys on its own.

A client's cookie must be valid on whichever server its next SYN reaches, so all servers of a
farm need the same key, and must rotate it in step. Each derives the key of the current time
interval from a shared secret, without talking to the others:

    key(i) = HMAC-SHA256(secret, b"fastopen-tfo-key" || i as 8 bytes big-endian)[:16]
    i      = floor(unix_time / interval)

The primary is ``key(i)`` and the backup ``key(i - 1)``: a cookie lives from one to two
intervals, and the kernel refreshes a client's cookie when it comes back with a backup one.
The secret file holds at least 16 bytes (surrounding whitespace is ignored) and must be private.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from pathlib import Path

from fastopen.cookies import KEY_SIZE, Key, KeyRing
from fastopen.errors import FastOpenError
from fastopen.ops.files import read_private

LABEL = b"fastopen-tfo-key"
MIN_SECRET = 16


def format_duration(seconds: float) -> str:
    """``seconds`` for people: ``1d 2h``, ``5m 3s``, ``42s`` (the two largest units)."""
    left = round(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def read_secret(path: Path) -> bytes:
    """The shared secret of the farm; refuses a file others can read and a short secret."""
    secret = read_private(path).strip()
    if len(secret) < MIN_SECRET:
        raise FastOpenError(
            f"the secret in {path} is {len(secret)} bytes; at least {MIN_SECRET} are needed",
            hint=f"make one: head -c 32 /dev/urandom | base64 > {path}; chmod 600 {path}",
        )
    return secret


def derive_key(secret: bytes, index: int) -> Key:
    """The key of interval ``index``."""
    mac = hmac.new(secret, LABEL + index.to_bytes(8, "big", signed=True), hashlib.sha256)
    return Key(mac.digest()[:KEY_SIZE])


@dataclass(frozen=True, slots=True)
class FarmKeys:
    """The ring of one interval and when it starts and ends (Unix times)."""

    index: int
    ring: KeyRing
    start: float
    end: float


def farm_keys(secret: bytes, interval: int, now: float) -> FarmKeys:
    """The primary (this interval) and backup (the previous one) at time ``now``."""
    index = math.floor(now / interval)
    ring = KeyRing(derive_key(secret, index), (derive_key(secret, index - 1),))
    return FarmKeys(index, ring, index * interval, (index + 1) * interval)
