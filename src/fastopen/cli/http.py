"""``fastopen serve`` and ``fastopen get``: HTTP/1.1 with TFO, and what TFO did on each request."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from fastopen.errors import FastOpenError
from fastopen.http.fetch import fetch
from fastopen.http.responder import serve_http
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
                "the kernel routes PREFIX into the TUN device. Without it, the stack takes the "
                "namespace's own addresses over from its kernel, and gives them back at the end.",
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
    try:
        if addresses:
            stack = UserspaceStack.attach(None, tun, addresses, pcap=pcap)
        else:
            stack = UserspaceStack.replace_kernel(None, tun, pcap=pcap)
    except ValueError as exc:
        if not addresses:
            raise click.UsageError(
                "--stack userspace without --address takes over the namespace's global "
                f"addresses, and there are none here ({exc})"
            ) from None
        raise click.BadParameter(str(exc), param_hint="--address") from None
    with stack:
        yield stack


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@_stack_options
@click.option("--body", default="hello from fastopen\n", show_default=True, help="Response body.")
@click.option(
    "--file",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The response body, read from this file (instead of --body).",
)
@click.option("--fastopen-backlog", type=click.IntRange(1), help="Default: net.core.somaxconn.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print a line per request.")
def serve(
    host: str,
    port: int,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    body: str,
    body_file: Path | None,
    fastopen_backlog: int | None,
    quiet: bool,
) -> None:
    """Serve BODY over HTTP/1.1 on HOST PORT with TFO on (GET and HEAD; Ctrl-C stops)."""

    payload = body.encode() if body_file is None else body_file.read_bytes()

    def on_request(peer: str, method: str | None, status: int, report: TfoReport) -> None:
        click.echo(f"{peer} {method or '-'} {status} {report}")

    async def run(engine: Stack) -> None:
        server = await serve_http(
            host,
            port,
            body=payload,
            stack=engine,
            fastopen_backlog=fastopen_backlog,
            on_request=None if quiet else on_request,
        )
        click.echo(f"serving http://{host}:{port}/ with TFO on ({stack} stack)")
        async with server:
            await server.serve_forever()

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
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the response body to this file (with --repeat, the last one's).",
)
def get(
    url: str,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    repeat: int,
    timeout: float,
    as_json: bool,
    output: Path | None,
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
            if output is not None:
                output.write_bytes(got.body)
            if as_json:
                click.echo(json.dumps({"request": i, **got.to_dict()}))
            else:
                click.echo(
                    f"{i}: {got.status} {got.reason}  ttfb {got.ttfb * 1000:.3f} ms  {got.report}"
                )

    with _stack(stack, tun, addresses, pcap) as engine:
        asyncio.run(run(engine))


COMMANDS = [serve, get]
