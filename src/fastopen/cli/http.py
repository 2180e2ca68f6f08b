"""``fastopen serve`` and ``fastopen get``: HTTP/1.1 with TFO, and what TFO did on each request."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import click

from fastopen.cli.options import Duration, in_netns, json_option, netns_option, now
from fastopen.constants import TFO_SERVER_ENABLE, TFO_SERVER_WO_SOCKOPT1
from fastopen.engine.cc import NAMES
from fastopen.errors import FastOpenError
from fastopen.http.fetch import Fetched, fetch
from fastopen.http.responder import serve_http
from fastopen.ops import enable as bits
from fastopen.ops import stats
from fastopen.replay import WINDOW, ReplayGuard
from fastopen.report import TfoReport
from fastopen.runtime import UserspaceStack
from fastopen.streams import STACKS, Stack

USERSPACE = "userspace"
SERVER_BITS = TFO_SERVER_ENABLE | TFO_SERVER_WO_SOCKOPT1


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
            click.option(
                "--offloads",
                is_flag=True,
                help="userspace stack: use the TUN device's checksum and TSO offloads "
                "(IFF_VNET_HDR) when the kernel has them: up to 64 KB per write and read.",
            ),
            click.option(
                "--congestion",
                type=click.Choice(NAMES),
                help="userspace stack: its congestion control (what tcp_congestion_control "
                f"is to the kernel's; default {NAMES[0]}).",
            ),
        ]
    ):
        command = option(command)
    return command


@contextlib.contextmanager
def _stack(
    name: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    offloads: bool = False,
    congestion: str | None = None,
) -> Iterator[Stack]:
    """The stack by name; a userspace one lives (with its TUN device) for the block."""
    if name != USERSPACE:
        if pcap is not None:
            raise click.UsageError("--pcap is for --stack userspace (for the kernel, tcpdump)")
        if congestion is not None:
            raise click.UsageError(
                "--congestion is for --stack userspace (for the kernel, the sysctl "
                "net.ipv4.tcp_congestion_control)"
            )
        yield STACKS[name]()
        return
    try:
        if addresses:
            stack = UserspaceStack.attach(
                None,
                tun,
                addresses,
                pcap=pcap,
                offloads=None if offloads else False,
                congestion_control=congestion or NAMES[0],
            )
        else:
            stack = UserspaceStack.replace_kernel(
                None,
                tun,
                pcap=pcap,
                offloads=None if offloads else False,
                congestion_control=congestion or NAMES[0],
            )
    except ValueError as exc:
        if not addresses:
            raise click.UsageError(
                "--stack userspace without --address takes over the namespace's global "
                f"addresses, and there are none here ({exc})"
            ) from None
        raise click.BadParameter(str(exc), param_hint="--address") from None
    with stack:
        yield stack


def _tfo_state(stack: Stack) -> str:
    """What ``serve`` says about TFO: on only when the server side can do it."""
    if isinstance(stack, UserspaceStack):
        return "TFO on" if stack.host.settings.tcp_fastopen & SERVER_BITS else "TFO off"
    value = bits.read()
    if value & SERVER_BITS:
        return "TFO on"
    return (
        f"TFO off: net.ipv4.tcp_fastopen is {value:#x}, without the server bit "
        "(`fastopen enable --server` turns it on)"
    )


async def _publish_counters(stack: UserspaceStack, tun: str, period: float = 0.2) -> None:
    """Keep the userspace stack's counters where `fastopen stats --stack userspace` reads them:
    within ``period`` of a change, and at least every 10 s (the file says when)."""
    published = stats.CounterFile(tun)
    last: dict[str, int] | None = None
    written = 0.0
    try:
        while True:
            values = dict(stack.host.counters)
            if values != last or time.monotonic() - written > 10:
                published.publish(values)
                last, written = values, time.monotonic()
            await asyncio.sleep(period)
    finally:
        published.close()


@click.command()
@click.argument("host")
@click.argument("port", type=click.IntRange(1, 65535))
@_stack_options
@click.option(
    "--body",
    default="hello from fastopen\n",
    show_default=True,
    help="The text every response carries.",
)
@click.option(
    "--file",
    "body_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The response body, read from this file (instead of --body).",
)
@click.option(
    "--fastopen-backlog",
    type=click.IntRange(1, 1_000_000),
    help="Pending TFO connections the listener queues (TCP_FASTOPEN qlen; default: "
    "net.core.somaxconn).",
)
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
    type=Duration("s", minimum=0.0, min_open=True, maximum=86400.0),
    default=WINDOW,
    show_default=True,
    help="How long a first delivery is remembered (the clients' SYN retransmission time; "
    "a bare number is seconds).",
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
@netns_option("Serve from inside the network namespace NETNS.")
def serve(
    host: str,
    port: int,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    offloads: bool,
    congestion: str | None,
    body: str,
    body_file: Path | None,
    fastopen_backlog: int | None,
    replay_store: str | None,
    replay_window: float,
    replay_unavailable: Literal["open", "closed"],
    replay_quarantine: Literal["listener", "flag", "off"],
    server_id: str | None,
    quiet: bool,
    netns: str | None,
) -> None:
    """Serve a short text over HTTP/1.1 on HOST PORT with TFO (GET and HEAD; Ctrl-C stops).

    With --stack userspace, the stack's counters are published for `fastopen stats --stack
    userspace` (and its Prometheus exporter) while it runs.
    """

    payload = body.encode() if body_file is None else body_file.read_bytes()

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
            body=payload,
            stack=engine,
            fastopen_backlog=fastopen_backlog,
            on_request=None if quiet else on_request,
            replay_guard=guard,
        )
        guarded = "" if guard is None else f", replay guard {guard.store.name}"
        # what start-up made (modules, tables, the stack) leaves the collector's view: a full
        # collection walked it all, 9-13 ms of pause in a SYN flood at 10,000/s
        gc.freeze()
        click.echo(
            f"serving http://{host}:{port}/ with {_tfo_state(engine)} ({stack} stack{guarded})"
        )
        publisher = None
        if isinstance(engine, UserspaceStack):
            publisher = asyncio.create_task(_publish_counters(engine, tun))
        main_task = asyncio.current_task()
        if main_task is not None:  # SIGTERM stops as Ctrl-C does: everything is removed
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
        try:
            async with server:
                await server.serve_forever()
        finally:
            if publisher is not None:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
            if guard is not None:
                await guard.close()

    try:
        with in_netns(netns), _stack(stack, tun, addresses, pcap, offloads, congestion) as engine:
            asyncio.run(run(engine))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    except OSError as exc:
        raise FastOpenError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}",
            hint="is the address local and the port free?",
        ) from None


def _request_json(i: int, got: Fetched) -> dict[str, Any]:
    """One request as ``get --json`` prints it: times in milliseconds (docs/json.md)."""
    data = got.to_dict()
    report = data["fastopen"]
    rtt = report.pop("rtt")
    report["rtt_ms"] = None if rtt is None else rtt * 1000
    return {
        "time": now(),
        "request": i,
        "status": data["status"],
        "reason": data["reason"],
        "ttfb_ms": got.ttfb * 1000,
        "total_ms": got.total * 1000,
        "body_bytes": data["body_bytes"],
        "fastopen": report,
    }


@click.command()
@click.argument("url")
@_stack_options
@click.option(
    "--repeat",
    type=click.IntRange(1, 10000),
    default=1,
    show_default=True,
    help="How many requests, one after the other (the first usually fetches a cookie).",
)
@click.option(
    "--timeout",
    type=Duration("s", minimum=0.0, min_open=True, maximum=3600.0),
    default="10s",
    show_default=True,
    help="Give up on a request after this long (bare: seconds).",
)
@json_option
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the response body to this file (with --repeat, the last one's).",
)
@netns_option("Connect from inside the network namespace NETNS.")
def get(
    url: str,
    stack: str,
    tun: str,
    addresses: tuple[str, ...],
    pcap: Path | None,
    offloads: bool,
    congestion: str | None,
    repeat: int,
    timeout: float,
    as_json: bool,
    output: Path | None,
    netns: str | None,
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
                    f"{url}: no answer within {timeout:g} s",
                    hint="is the server up and reachable? a slow one needs a longer --timeout",
                ) from None
            except OSError as exc:
                raise FastOpenError(
                    f"{url}: {exc.strerror or exc}", hint="is the server up and reachable?"
                ) from None
            if output is not None:
                output.write_bytes(got.body)
            if as_json:
                click.echo(json.dumps(_request_json(i, got), sort_keys=True))
            else:
                click.echo(
                    f"{i}: {got.status} {got.reason}  ttfb {got.ttfb * 1000:.3f} ms  {got.report}"
                )

    with in_netns(netns), _stack(stack, tun, addresses, pcap, offloads, congestion) as engine:
        asyncio.run(run(engine))


COMMANDS = [serve, get]
