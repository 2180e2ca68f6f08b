"""DNS over TCP (RFC 7766) with dnspython, the query riding in the SYN.

A DNS query is safe to replay, so it is the first flight: with a cookie cached, query and SYN
travel in one packet and the answer comes one round trip after the first packet left.
"""

from __future__ import annotations

import struct
import time

from fastopen.errors import MissingExtra

try:
    import dns.message
    import dns.query
except ImportError as exc:
    raise MissingExtra("dnspython", "dns") from exc

from fastopen.kernel import attempts
from fastopen.kernel.client import create_connection
from fastopen.report import TfoReport


def query_tcp(
    query: dns.message.Message,
    where: str,
    *,
    port: int = 53,
    timeout: float = 5.0,
    fastopen: bool = True,
) -> tuple[dns.message.Message, TfoReport]:
    """Send ``query`` to the server ``where`` over a TFO connection; its answer and the report.

    Raises ``dns.query.BadResponse`` when the answer does not match the query, and dnspython's
    or the socket's errors otherwise, as ``dns.query.tcp`` does.
    """
    wire = query.to_wire()
    expiration = time.time() + timeout
    first_flight = struct.pack("!H", len(wire)) + wire
    with create_connection(
        (where, port), timeout, first_flight=first_flight, fastopen=fastopen
    ) as sock:
        response, _ = dns.query.receive_tcp(sock, expiration)
        report = attempts.report(sock)
    if not query.is_response(response):
        raise dns.query.BadResponse
    return response, report
