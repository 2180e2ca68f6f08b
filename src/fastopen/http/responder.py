"""A small HTTP/1.1 responder over TFO streams: GET and HEAD of one static body.

Anything malformed gets 400, other methods 405; connections are kept alive unless the client says
``Connection: close`` or speaks HTTP/1.0. With a replay guard, the first request of a connection
the guard suspects of being a replay gets ``425 Too Early`` (RFC 8470) unless it is safe to replay
(GET, HEAD, OPTIONS).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastopen.cookies import KeyRing
from fastopen.http import replay_safe
from fastopen.report import TfoReport
from fastopen.streams import ServerGuard, Stack, start_server

log = logging.getLogger(__name__)

MAX_HEAD = 8192
#: A body up to this long goes out in one write with its header (one segment when it fits).
COPY_MAX = 65536
_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 425: "Too Early"}

#: Called once per request: peer address, method (None if malformed), status, the TFO report.
OnRequest = Callable[[str, str | None, int, TfoReport], None]


def too_early(method: str, report: TfoReport | None) -> bool:
    """Whether a connection's first request must get 425 Too Early: its replay guard suspects a
    replay (``report.replay_suspected``) and ``method`` is not safe to replay."""
    return bool(report is not None and report.replay_suspected) and not replay_safe(method)


def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, head: bool, close: bool
) -> None:
    """Write the response: the header and, unless for HEAD, the body; a body over
    :data:`COPY_MAX` is written after the header, not copied into one bytes with it."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close" if close else "Connection: keep-alive",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    header = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if head:
        writer.write(header)
    elif len(body) <= COPY_MAX:
        writer.write(header + body)
    else:
        writer.write(header)
        writer.write(body)


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]] | None:
    """Method, target, version and headers (lower-case names) of a request head, or None."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(("/", "*")):
        return None
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return None
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return method, target, version, headers


async def _serve_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    body: bytes,
    on_request: OnRequest | None,
) -> None:
    peer = writer.get_extra_info("peername")
    where = f"{peer[0]}:{peer[1]}" if peer else "?"
    first = True  # only the first request can be (part of) a replayed first flight
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    _respond(writer, 400, b"bad request\n", head=False, close=True)
                return
            except asyncio.LimitOverrunError:
                raw = b""
            parsed = parse_head(raw[:-4]) if 0 < len(raw) <= MAX_HEAD else None
            status, method, close, head, data = 400, None, True, False, b"bad request\n"
            if parsed is not None:
                method, _, version, headers = parsed
                has_body = (
                    headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
                )
                head = method == "HEAD"
                if first and too_early(method, writer.get_extra_info("fastopen")):
                    status, data = 425, b"too early: this request may be a replay\n"
                elif method not in ("GET", "HEAD"):  # its body is not read: close after the answer
                    status, data = 405, b"only GET and HEAD\n"
                elif not has_body:
                    status, data = 200, body
                    close = (
                        version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                    )
            if on_request is not None:
                on_request(where, method, status, writer.get_extra_info("fastopen"))
            _respond(writer, status, data, head=head, close=close)
            await writer.drain()
            first = False
            if close:
                return
    except ConnectionError as exc:
        log.debug("%s: %s", where, exc)
    finally:
        writer.close()


async def serve_http(
    host: str | None,
    port: int,
    *,
    body: bytes = b"hello from fastopen\n",
    stack: Stack | None = None,
    fastopen_backlog: int | None = None,
    keys: KeyRing | None = None,
    on_request: OnRequest | None = None,
    replay_guard: ServerGuard | None = None,
) -> asyncio.AbstractServer:
    """Start the responder on ``host``, ``port`` with TFO on; returns the (serving) server.

    ``replay_guard`` (a :class:`fastopen.replay.ReplayGuard`) checks each connection: see
    :func:`too_early`.
    """

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(reader, writer, body, on_request)

    return await start_server(
        handler,
        host,
        port,
        fastopen_backlog=fastopen_backlog,
        keys=keys,
        stack=stack,
        replay_guard=replay_guard,
    )
