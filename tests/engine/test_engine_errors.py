"""Engine errors are the OSError subclasses the socket module raises for the same errno."""

from __future__ import annotations

import errno

import pytest
from engine_support import CLIENT, ISN, PEER_ISN, SERVER, A, R, S, connecting, host, seg

from fastopen.engine import EngineError
from fastopen.errors import FastOpenError

KINDS = [
    (errno.ECONNREFUSED, ConnectionRefusedError),
    (errno.ECONNRESET, ConnectionResetError),
    (errno.ECONNABORTED, ConnectionAbortedError),
    (errno.EPIPE, BrokenPipeError),
    (errno.ETIMEDOUT, TimeoutError),
    (errno.EAGAIN, BlockingIOError),
    (errno.EINPROGRESS, BlockingIOError),
    (errno.EACCES, PermissionError),
]


@pytest.mark.parametrize(("code", "kind"), KINDS, ids=[errno.errorcode[c] for c, _ in KINDS])
def test_each_errno_is_the_socket_modules_class(code: int, kind: type[OSError]) -> None:
    exc = EngineError(code, hint="a hint")
    assert isinstance(exc, kind) and isinstance(exc, EngineError) and isinstance(exc, FastOpenError)
    assert type(exc) is not EngineError
    assert type(OSError(code, "x")) is kind  # the class Python itself gives that errno
    assert exc.errno == code and exc.args == (code, exc.strerror)
    assert str(exc) == f"{errno.errorcode[code]}: {exc.strerror} (a hint)"


@pytest.mark.parametrize("code", [errno.EHOSTUNREACH, errno.ENOTCONN, errno.EADDRINUSE])
def test_errnos_without_a_subclass_stay_plain(code: int) -> None:
    exc = EngineError(code)
    assert type(exc) is EngineError and isinstance(exc, OSError)
    assert type(OSError(code, "x")) is OSError


def test_a_peer_reset_is_caught_as_connection_errors_are() -> None:
    h = host(CLIENT)
    sock, syn = connecting(h)
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, dport=syn.src_port), 0.1)
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1, dport=syn.src_port), 0.2)
    try:
        sock.recv(10, 0.3)
    except ConnectionError as exc:  # what servers catch to end a connection quietly
        caught: BaseException = exc
    assert isinstance(caught, ConnectionResetError) and isinstance(caught, EngineError)
    with pytest.raises(BrokenPipeError):
        sock.send(b"x", 0.3)
