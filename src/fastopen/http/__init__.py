"""HTTP with TCP Fast Open: a small responder and fetcher, and transports for httpx and urllib3.

The rule for every client here: SYN data may be delivered twice, so only a request whose replay is
harmless may ride in a SYN: GET, HEAD and OPTIONS. Any other method connects without TFO data.
"""

from __future__ import annotations

#: Methods whose request may ride in a SYN (safe to replay).
REPLAY_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def replay_safe(method: str | bytes) -> bool:
    """Whether a request with ``method`` may ride in a SYN."""
    name = method.decode("ascii", "replace") if isinstance(method, bytes) else method
    return name.upper() in REPLAY_SAFE_METHODS
