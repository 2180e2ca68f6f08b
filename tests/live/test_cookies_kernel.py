"""Our cookies are the Linux kernel's: a kernel client gets a cookie from a kernel server whose key
we set, and the cookie it caches in tcp_metrics is the one fastopen.cookies computes."""

from __future__ import annotations

import re
import socket
import threading

import pytest

from fastopen.cookies import KeyRing
from fastopen.kernel.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.lab.netns import CLIENT, SERVER, Netns

OLD = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
NEW = "01234567-89abcdef-fedcba98-76543210"
PORT = 8080


def _listen(server: Netns, family: socket.AddressFamily, addr: str) -> socket.socket:
    with server.entered():
        lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    lsock.bind((addr, PORT))
    lsock.listen(16)
    lsock.settimeout(10)
    return lsock


def _exchange(client: Netns, lsock: socket.socket, family: socket.AddressFamily, addr: str) -> None:
    """One TFO request from the client namespace; the server echoes it back."""
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            received.append(conn.recv(100))
            conn.sendall(b"pong")

    thread = threading.Thread(target=serve)
    thread.start()
    with client.entered():
        csock = socket.socket(family, socket.SOCK_STREAM)
    with csock:
        # blocking: without a cookie the kernel completes the handshake, then sends the data
        csock.sendto(b"ping", MSG_FASTOPEN, (addr, PORT))
        csock.settimeout(10)
        assert csock.recv(100) == b"pong"
    thread.join(10)
    assert received == [b"ping"]


def _cached_cookie(client: Netns, server_addr: str) -> str:
    out = client.run(["ip", "tcp_metrics", "show", server_addr]).stdout
    match = re.search(r"fo_cookie ([0-9a-f]+)", out)
    assert match, f"no cookie cached for {server_addr}: {out!r}"
    return match.group(1)


@pytest.mark.parametrize(
    ("family", "client_addr", "server_addr"),
    [
        (socket.AF_INET, CLIENT.ipv4, SERVER.ipv4),
        (socket.AF_INET6, CLIENT.ipv6, SERVER.ipv6),
    ],
    ids=["ipv4", "ipv6"],
)
def test_kernel_cookie_equals_ours(
    netns_pair: tuple[Netns, Netns],
    family: socket.AddressFamily,
    client_addr: str,
    server_addr: str,
) -> None:
    client, server = netns_pair
    server.sysctl("net.ipv4.tcp_fastopen_key", OLD)
    with _listen(server, family, server_addr) as lsock:
        _exchange(client, lsock, family, server_addr)
    expected = KeyRing.from_text(OLD).mint(client_addr, server_addr).hex()
    assert _cached_cookie(client, server_addr) == expected


def test_backup_key_cookie_is_accepted_and_refreshed(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    family, server_addr = socket.AF_INET, SERVER.ipv4
    server.sysctl("net.ipv4.tcp_fastopen_key", OLD)
    with _listen(server, family, server_addr) as lsock:
        _exchange(client, lsock, family, server_addr)  # the client learns the OLD cookie
        old_cookie = KeyRing.from_text(OLD).mint(CLIENT.ipv4, server_addr).hex()
        assert _cached_cookie(client, server_addr) == old_cookie

        # rotate: NEW is primary, OLD the backup, as `fastopen key rotate` does
        assert server.sysctl("net.ipv4.tcp_fastopen_key", f"{NEW},{OLD}") == f"{NEW},{OLD}"
        before = server.counters()
        _exchange(client, lsock, family, server_addr)  # the SYN carries the OLD cookie and data
        after = server.counters()

    assert after["TCPFastOpenPassive"] - before["TCPFastOpenPassive"] == 1
    assert after["TCPFastOpenPassiveAltKey"] - before["TCPFastOpenPassiveAltKey"] == 1
    assert after["TCPFastOpenPassiveFail"] == before["TCPFastOpenPassiveFail"]
    # the SYN-ACK handed the client the primary (NEW) cookie, as KeyRing.mint predicts
    ring = KeyRing.from_text(f"{NEW},{OLD}")
    assert _cached_cookie(client, server_addr) == ring.mint(CLIENT.ipv4, server_addr).hex()
    assert ring.mint(CLIENT.ipv4, server_addr).hex() != old_cookie
