"""``fastopen cookie``: the cookie a Linux server with a given key hands a client."""

from __future__ import annotations

import ipaddress

import click

from fastopen.cookies import KeyRing
from fastopen.errors import FastOpenError


@click.command()
@click.argument("key")
@click.argument("client_addr")
@click.argument("server_addr")
def cookie(key: str, client_addr: str, server_addr: str) -> None:
    """Print the TFO cookie for CLIENT_ADDR connecting to SERVER_ADDR.

    KEY is in the net.ipv4.tcp_fastopen_key form (A-B-C-D[,A-B-C-D]); its primary key is used,
    as a Linux 5.3+ server does.
    """
    ring = KeyRing.from_text(key)
    try:
        client = ipaddress.ip_address(client_addr)
        server = ipaddress.ip_address(server_addr)
    except ValueError as exc:
        raise FastOpenError(str(exc)) from None
    try:
        click.echo(ring.mint(client, server).hex())
    except ValueError as exc:
        raise FastOpenError(str(exc), hint="give two IPv4 or two IPv6 addresses") from None


COMMANDS = [cookie]
