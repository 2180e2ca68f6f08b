"""``fastopen serve`` and ``fastopen get``: HTTP/1.1 with TFO, and what TFO did on each request."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import click

from fastopen.errors import FastOpenError
from fastopen.http.fetch import fetch
from fastopen.http.responder import serve_http
from fastopen.replay import WINDOW, ReplayGuard
from fastopen.report import TfoReport
from fastopen.runtime import UserspaceStack
from fastopen.streams import STACKS, Stack

USERSPACE = "userspace"


def _stack_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--stack, and the TUN device and addresses of the userspace stack."""
    for option in reversed(
        [
            click.option(
                "--stack",
                type=click.Choice(sorted(STACKS)),
                default="kernel",
                show_default=True,
                help="The TCP stack that carries the connections.",
            ),
            click.option(
                "--tun",
                default="fous0",
                show_default=True,
                help="userspace stack: the TUN device it creates in this network namespace.",
            ),
            click.option(
                "--address",
                "addresses",
                multiple=True,
                metavar="ADDR/PREFIX",
                help="userspace stack: an address of its own (IPv4 and/or IPv6, repeatable); "
                "the kernel routes PREFIX into the TUN device.",
            ),
            click.option(
                "--pcap",
                type=click.Path(dir_okay=False, writable=True, path_type=Path),
                help="userspace stack: write every packet it sends and receives to this file.",
            ),
        ]
    ):
        command = option(command)
    return command


@contextlib.contextmanager
def _stack(name: str, tun: str, addresses: tuple[str, ...], pcap: Path | None) -> Iterator[Stack]:
    """The stack by name; a userspace one lives (with its TUN device) for the block."""
    if name != USERSPACE:
        if pcap is not None:
            raise click.UsageError("--pcap is for --stack userspace (for the kernel, tcpdump)")
        yield STACKS[name]()
        return
    if not addresses:
        raise click.UsageError("--stack userspace needs --address ADDR/PREFIX")
    try:
        stack = UserspaceStack.attach(None, tun, addresses, pcap=pcap)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--address") from None
    with stack:
        yield stack


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@_stack_options
@click.option("--body", default="hello from fastopen\n", show_default=True, help="Response body.")
@click.option("--fastopen-backlog", type=click.IntRange(1), help="Default: net.core.somaxconn.")
@click.option(
    "--replay-guard",
    "replay_store",
    metavar="STORE",
    help="Check every connection for replayed SYN data in STORE: memory, sqlite:PATH or a Redis "
    "URL (redis://host:port, unix:///path); a suspected replay of a request that is not safe to "
    "replay gets 425 Too Early.",
)
@click.option(
    "--replay-window",
    type=click.FloatRange(0, min_open=True),
    default=WINDOW,
    show_default=True,
    help="Seconds a first delivery is remembered (the clients' SYN retransmission time).",
)
@click.option(
    "--replay-unavailable",
    type=click.Choice(["open", "closed"]),
    default="closed",
    show_default=True,
    help="When the store cannot answer: closed flags SYN data, open lets it pass.",
)
@click.option(
    "--replay-quarantine",
    type=click.Choice(["listener", "flag", "off"]),
    default="listener",
    show_default=True,
    help="For one window after the store forgot (a restart): keep TFO off on the listener, "
    "or flag SYN data, or neither.",
)
@click.option("--server-id", help="This server's name in the replay store (default host/pid).")
@click.option("-q", "--quiet", is_flag=True, help="Do not print a line per request.")
def serve(
    host: str,
    port: int,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    body: str,
    fastopen_backlog: int | None,
    replay_store: str | None,
    replay_window: float,
    replay_unavailable: Literal["open", "closed"],
    replay_quarantine: Literal["listener", "flag", "off"],
    server_id: str | None,
    quiet: bool,
) -> None:
    """Serve BODY over HTTP/1.1 on HOST PORT with TFO on (GET and HEAD; Ctrl-C stops)."""

    def on_request(peer: str, method: str | None, status: int, report: TfoReport) -> None:
        click.echo(f"{peer} {method or '-'} {status} {report}")

    guard = None
    if replay_store is not None:
        guard = ReplayGuard(
            replay_store,
            window=replay_window,
            on_unavailable=replay_unavailable,
            quarantine=replay_quarantine,
            server_id=server_id,
        )

    async def run(engine: Stack) -> None:
        server = await serve_http(
            host,
            port,
            body=body.encode(),
            stack=engine,
            fastopen_backlog=fastopen_backlog,
            on_request=None if quiet else on_request,
            replay_guard=guard,
        )
        guarded = "" if guard is None else f", replay guard {guard.store.name}"
        click.echo(f"serving http://{host}:{port}/ with TFO on ({stack} stack{guarded})")
        try:
            async with server:
                await server.serve_forever()
        finally:
            if guard is not None:
                await guard.close()

    try:
        with _stack(stack, tun, addresses, pcap) as engine:
            asyncio.run(run(engine))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise FastOpenError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="is the address local and the port free?",
        ) from None


@click.command()
@click.argument("url")
@_stack_options
@click.option("--repeat", type=click.IntRange(1, 10000), default=1, show_default=True)
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per request.")
def get(
    url: str,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    repeat: int,
    timeout: float,
    as_json: bool,
) -> None:
    """GET URL with TFO and print status, time to first byte and the TFO report of each request.

    The first request to a server usually fetches a cookie; later ones send the request in the SYN.
    """

    async def run(engine: Stack) -> None:
        for i in range(1, repeat + 1):
            try:
                got = await fetch(url, stack=engine, timeout=timeout)
            except TimeoutError:
                raise FastOpenError(
                    f"{url}: no answer within {timeout} s",
                    hint="is the server up and reachable? a slow one needs a longer --timeout",
                ) from None
            except OSError as exc:
                raise FastOpenError(
                    f"{url}: {exc.strerror or exc}", hint="is the server up and reachable?"
                ) from None
            if as_json:
                click.echo(json.dumps({"request": i, **got.to_dict()}))
            else:
                click.echo(
                    f"{i}: {got.status} {got.reason}  ttfb {got.ttfb * 1000:.3f} ms  {got.report}"
                )

    with _stack(stack, tun, addresses, pcap) as engine:
        asyncio.run(run(engine))


COMMANDS = [serve, get]
