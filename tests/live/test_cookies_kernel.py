"""Our cookies are the Linux kernel's: a kernel client gets a cookie from a kernel server whose key
we set, and the cookie it caches in tcp_metrics is the one fastopen.cookies computes."""

from __future__ import annotations

import pytest
from tfo import cached_cookie, echo_server, request

from fastopen.cookies import KeyRing
from fastopen.lab.netns import CLIENT, SERVER, Netns

OLD = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
NEW = "01234567-89abcdef-fedcba98-76543210"


@pytest.mark.parametrize(
    ("client_addr", "server_addr"),
    [(CLIENT.ipv4, SERVER.ipv4), (CLIENT.ipv6, SERVER.ipv6)],
    ids=["ipv4", "ipv6"],
)
def test_kernel_cookie_equals_ours(
    netns_pair: tuple[Netns, Netns], client_addr: str, server_addr: str
) -> None:
    client, server = netns_pair
    server.sysctl("net.ipv4.tcp_fastopen_key", OLD)
    with echo_server(server, server_addr):
        # blocking: without a cookie the kernel completes the handshake, then sends the data
        assert request(client, server_addr, b"ping") == b"ok:ping"
    expected = KeyRing.from_text(OLD).mint(client_addr, server_addr).hex()
    assert cached_cookie(client, server_addr) == expected


def test_backup_key_cookie_is_accepted_and_refreshed(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    server_addr = SERVER.ipv4
    server.sysctl("net.ipv4.tcp_fastopen_key", OLD)
    with echo_server(server, server_addr):
        assert request(client, server_addr, b"ping") == b"ok:ping"  # learns the OLD cookie
        old_cookie = KeyRing.from_text(OLD).mint(CLIENT.ipv4, server_addr).hex()
        assert cached_cookie(client, server_addr) == old_cookie

        # rotate: NEW is primary, OLD the backup, as `fastopen key rotate` does
        assert server.sysctl("net.ipv4.tcp_fastopen_key", f"{NEW},{OLD}") == f"{NEW},{OLD}"
        before = server.counters()
        # the SYN carries the OLD cookie and data
        assert request(client, server_addr, b"ping") == b"ok:ping"
        after = server.counters()

    assert after["TCPFastOpenPassive"] - before["TCPFastOpenPassive"] == 1
    assert after["TCPFastOpenPassiveAltKey"] - before["TCPFastOpenPassiveAltKey"] == 1
    assert after["TCPFastOpenPassiveFail"] == before["TCPFastOpenPassiveFail"]
    # the SYN-ACK handed the client the primary (NEW) cookie, as KeyRing.mint predicts
    ring = KeyRing.from_text(f"{NEW},{OLD}")
    assert cached_cookie(client, server_addr) == ring.mint(CLIENT.ipv4, server_addr).hex()
    assert ring.mint(CLIENT.ipv4, server_addr).hex() != old_cookie
