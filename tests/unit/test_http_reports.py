"""Per-request reports and the classification of a deferred connect's failure, without a network
(the live tests in tests/live/test_kernel_http.py and test_http_servers.py drive them for real)."""

from __future__ import annotations

import errno

import pytest

from fastopen.http import first_write_replay_safe, replay_safe
from fastopen.http.reports import Connection, RequestReport
from fastopen.report import Side, TfoReport

ACKED = TfoReport(side=Side.CLIENT, attempted=True, syn_data_sent=True, syn_data_acked=True)
RECEIVED = TfoReport(side=Side.SERVER, attempted=True, tfo_child=True, syn_data_received=True)
PLAIN = TfoReport(side=Side.CLIENT, attempted=False)


def test_requests_on_one_connection_only_the_first_rides_in_the_syn() -> None:
    conn = Connection(lambda: ACKED, pending=False)
    first, second, third = (conn.request() for _ in range(3))
    assert (first.in_syn, first.reused, first.index) == (True, False, 0)
    assert [(r.in_syn, r.reused, r.index) for r in (second, third)] == [
        (False, True, 1),
        (False, True, 2),
    ]
    assert all(r.connection is ACKED for r in (first, second, third))
    assert str(first).startswith("request 1 on its connection: rode in the SYN;")
    assert "(reused): not in the SYN" in str(second)
    assert third.to_dict()["connection"] == ACKED.to_dict()


def test_server_side_and_tls() -> None:
    assert RequestReport(RECEIVED).in_syn
    tls = RequestReport(RECEIVED, tls=True)
    assert not tls.in_syn and tls.handshake_in_syn and tls.saved_round_trip
    assert "ClientHello rode in the SYN" in str(tls)
    assert not RequestReport(PLAIN).saved_round_trip


class LibraryOSError(OSError):
    """An OSError subclass of a library (aiohttp's ClientOSError keeps the errno this way)."""


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ECONNREFUSED, ConnectionRefusedError),
        (errno.ETIMEDOUT, TimeoutError),
        (errno.EHOSTUNREACH, OSError),
        (errno.ENETUNREACH, OSError),
    ],
)
def test_connect_errors_of_a_deferred_connect(code: int, expected: type[OSError]) -> None:
    conn = Connection(lambda: ACKED, pending=True)
    failed = conn.connect_failure(LibraryOSError(code, "x"))
    assert type(failed) is expected and failed.errno == code


def test_what_is_not_a_connect_failure() -> None:
    conn = Connection(lambda: ACKED, pending=True)
    assert conn.connect_failure(ConnectionResetError(errno.ECONNRESET, "reset")) is None
    assert conn.connect_failure(ValueError("not an OSError")) is None
    assert conn.connect_failure(TimeoutError()) is None  # no socket to show SYN-SENT
    conn.received()  # the peer answered: later errors are not the connect's
    assert conn.connect_failure(ConnectionRefusedError(errno.ECONNREFUSED, "x")) is None


def test_the_one_replay_rule() -> None:
    assert [replay_safe(m) for m in ("GET", b"head", "options", "POST", "PUT")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert first_write_replay_safe("POST", tls=True)
    assert not first_write_replay_safe("POST", tls=False)
