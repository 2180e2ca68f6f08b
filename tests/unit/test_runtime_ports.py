"""The userspace stack's first ephemeral port is drawn, as Linux's differ from one process to the
next: a new process starting at 32768 as the last one did reused its 4-tuple, which the peer
still held in TIME-WAIT (the server closed first), and that TIME-WAIT answered the SYN with an
ACK about half the time (the timestamps of a new process are random): a second lost to the SYN's
retransmission (``fastopen get`` from nginx, twice in a row, took 1,005 ms to its first byte)."""

from __future__ import annotations

import os
from ipaddress import IPv4Address

import pytest

from fastopen.engine import Host
from fastopen.engine.host import EPHEMERAL_HIGH, EPHEMERAL_LOW
from fastopen.runtime import UserspaceStack

A, B = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")


def test_each_stack_starts_its_ephemeral_ports_at_its_own_place() -> None:
    firsts = []
    for _ in range(8):
        read, write = os.pipe()  # the stack is not started: nothing is read or written
        try:
            stack = UserspaceStack(write, [str(A)])
            firsts.append(stack.host.ephemeral_port(A, B, 80))
            assert stack.host.ephemeral_port(A, B, 80) in (firsts[-1] + 1, EPHEMERAL_LOW)
        finally:
            os.close(read)
            os.close(write)
    assert all(EPHEMERAL_LOW <= port <= EPHEMERAL_HIGH for port in firsts)
    assert len(set(firsts)) > 1  # eight draws among 28,232 ports: all alike is 1 in 10^31


def test_a_host_starts_where_it_is_told_and_refuses_a_port_out_of_range() -> None:
    assert Host([str(A)]).ephemeral_port(A, B, 80) == EPHEMERAL_LOW
    assert Host([str(A)], first_port=EPHEMERAL_HIGH).ephemeral_port(A, B, 80) == EPHEMERAL_HIGH
    with pytest.raises(ValueError, match="ephemeral port"):
        Host([str(A)], first_port=1024)
