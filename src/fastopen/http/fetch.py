"""One HTTP/1.1 GET over a TFO stream, timed: status, time to first byte and the TFO report."""

from __future__ import annotations

import asyncio
import ssl as _ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from fastopen.errors import FastOpenError
from fastopen.report import TfoReport
from fastopen.streams import Stack, open_connection


class BadURL(FastOpenError, ValueError):
    """A URL ``fastopen get`` cannot fetch."""


class BadResponse(FastOpenError, ValueError):
    """The server's answer is not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The outcome of one request."""

    status: int
    reason: str
    #: Seconds from the start of the connect to the first byte of the response.
    ttfb: float
    #: Seconds from the start of the connect to the end of the response.
    total: float
    body: bytes
    report: TfoReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "ttfb": self.ttfb,
            "total": self.total,
            "body_bytes": len(self.body),
            "fastopen": self.report.to_dict(),
        }


def _split(url: str) -> tuple[bool, str, int, str, str]:
    """TLS?, host, port, Host header and target of an http:// or https:// URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadURL(f"cannot fetch {url!r}", hint="give an http:// or https:// URL with a host")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError as exc:
        raise BadURL(f"bad port in {url!r}: {exc}", hint="a port is 1 to 65535") from None
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return tls, parts.hostname, port, parts.netloc.rpartition("@")[2], target


async def fetch(
    url: str,
    *,
    stack: Stack | None = None,
    ssl: _ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> Fetched:
    """GET ``url`` with the request in the SYN (GET is safe to replay) and time it.

    For https the TLS ClientHello rides in the SYN instead (``ssl`` defaults to the system's
    verifying context).
    """
    tls, host, port, authority, target = _split(url)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: fastopen\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    context = (ssl or _ssl.create_default_context()) if tls else None
    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        reader, writer = await open_connection(
            host, port, first_flight=request, stack=stack, ssl=context
        )
        try:
            first = await reader.read(1)
            ttfb = time.perf_counter() - start
            head = first + await reader.readuntil(b"\r\n\r\n")
            rest = await reader.read()
            total = time.perf_counter() - start
            report = writer.get_extra_info("fastopen")
        except asyncio.IncompleteReadError:
            raise BadResponse(
                f"{url}: the connection closed before a whole response",
                hint="is an HTTP server listening there?",
            ) from None
        finally:
            writer.close()
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, status_rest = status_line.partition(" ")
    code, _, reason = status_rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise BadResponse(
            f"{url}: not an HTTP/1.x response: {status_line[:60]!r}",
            hint="is an HTTP server listening there?",
        )
    return Fetched(int(code), reason, ttfb, total, rest, report)
