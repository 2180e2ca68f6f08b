"""A DNS-over-TCP query with dnspython over TFO: the second query rides in the SYN."""

from __future__ import annotations

import socketserver
import struct

import dns.message
import dns.rrset
from tfo import serving

import fastopen
from fastopen.kernel.dns import query_tcp
from fastopen.lab.netns import SERVER, Netns
from fastopen.report import FailReason, TfoReport

PORT = 5353


class DnsHandler(socketserver.StreamRequestHandler):
    """Answers every A query with 198.18.0.99."""

    log: list[TfoReport]

    def handle(self) -> None:
        self.log.append(fastopen.report(self.request))
        (length,) = struct.unpack("!H", self.rfile.read(2))
        query = dns.message.from_wire(self.rfile.read(length))
        response = dns.message.make_response(query)
        response.answer.append(
            dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "198.18.0.99")
        )
        wire = response.to_wire()
        self.wfile.write(struct.pack("!H", len(wire)) + wire)


def test_dns_query_rides_in_the_syn(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    log: list[TfoReport] = []
    results = []
    with serving(server, type("H", (DnsHandler,), {"log": log}), PORT):
        for _ in range(2):
            query = dns.message.make_query("fastopen.example.", "A")
            with client.entered():
                results.append(query_tcp(query, SERVER.ipv4, port=PORT))

    for answer, _ in results:
        assert answer.answer[0][0].to_text() == "198.18.0.99"
    assert results[0][1].fail_reason is FailReason.NO_COOKIE
    assert results[1][1].syn_data_acked
    assert [r.syn_data_received for r in log] == [False, True]
