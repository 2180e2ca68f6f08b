"""HTTP with TCP Fast Open: a small responder and fetcher; clients for httpx, urllib3, requests
and aiohttp; helpers for ASGI and WSGI servers (uvicorn, hypercorn, gunicorn). See
docs/integrations.md.

The rule for every client here: SYN data may be delivered twice, so only a request whose replay is
harmless may ride in a SYN: GET, HEAD and OPTIONS. Any other method connects without TFO data.
Over TLS the SYN carries the ClientHello, which is always safe to replay.
"""

from __future__ import annotations

#: Methods whose request may ride in a SYN (safe to replay).
REPLAY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def replay_safe(method: str | bytes) -> bool:
    """Whether a request with ``method`` may ride in a SYN."""
    name = method.decode("ascii", "replace") if isinstance(method, bytes) else method
    return name.upper() in REPLAY_SAFE_METHODS


def first_write_replay_safe(method: str | bytes, *, tls: bool) -> bool:
    """Whether the first write of a new connection for a ``method`` request may ride in a SYN:
    over TLS that write is the ClientHello (always safe), else the request itself."""
    return tls or replay_safe(method)
