"""``fastopen demo``: TFO saves a round trip, shown over an emulated 100 ms link."""

from __future__ import annotations

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fastopen.cli.options import Duration
from fastopen.errors import FastOpenError
from fastopen.lab import demo as _demo
from fastopen.lab.demo import Kind, Sample, StackResult
from fastopen.lab.emulator import check_support
from fastopen.lab.ladder import draw
from fastopen.report import TfoReport
from fastopen.streams import STACKS


def _what(report: TfoReport, server: TfoReport | None) -> str:
    if report.used:
        text = "request in the SYN, acked"
    elif report.cookie_requested:
        text = "cookie requested"
    elif report.off_reason is not None:
        text = "off"
    else:
        text = str(report)
    if server is not None and server.syn_data_received:
        text += "; server read it at once"
    return text


def _times_table(results: list[StackResult], rtt: float) -> Table:
    virtual = any(r.stack == _demo.VIRTUAL for r in results)
    clock = " (virtual time)" if virtual else ""
    table = Table(title=f"Time to first byte over a {rtt * 1000:g} ms RTT link{clock}")
    table.add_column("stack")
    table.add_column("connection")
    table.add_column("n", justify="right")
    table.add_column("first byte", justify="right")
    table.add_column("RTTs", justify="right")
    table.add_column("what TFO did")
    for result in results:
        for kind in Kind:
            samples: list[Sample] = result.of(kind)
            median = result.median(kind)
            last = samples[-1]
            table.add_row(
                result.stack,
                kind.value,
                str(len(samples)),
                f"{median * 1000:.1f} ms",
                f"{median / rtt:.2f}",
                _what(last.client, last.server),
            )
        table.add_row(
            result.stack,
            "[bold]TFO/plain[/bold]",
            "",
            f"[bold]{result.ratio:.2f}[/bold]",
            "",
            "goal: at most 0.52",
            end_section=True,
        )
    return table


def _counters_table(result: StackResult) -> Table:
    source = (
        "/proc/net/netstat TcpExt of each namespace"
        if result.stack == "kernel"
        else "the engine's counters, TcpExt names"
    )
    what = result.stack if result.stack == _demo.VIRTUAL else f"{result.stack} stack"
    table = Table(title=f"TFO counters ({what}: {source})")
    table.add_column("counter")
    table.add_column(f"client {result.client_ns}", justify="right")
    table.add_column(f"server {result.server_ns}", justify="right")
    for name, (client, server) in result.counters.items():
        table.add_row(name, str(client), str(server))
    return table


@click.command()
@click.option(
    "--rtt",
    type=Duration("ms", minimum=0.0, min_open=True, maximum=10.0),
    default="100ms",
    show_default=True,
    help="Round-trip time of the emulated link (50ms, 0.2s; a bare number is ms).",
)
@click.option(
    "-n",
    "--samples",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Connections of each kind (plain, TFO with a cookie).",
)
@click.option("--ipv6", is_flag=True, help="Use the lab's IPv6 addresses.")
@click.option(
    "--stack",
    "stacks",
    type=click.Choice(sorted(STACKS)),
    multiple=True,
    help="The stacks to compare (default: every stack available).",
)
@click.option(
    "--virtual",
    is_flag=True,
    help="Run the engine pair in virtual time (what happens without root) even as root.",
)
def demo(rtt: float, samples: int, ipv6: bool, stacks: tuple[str, ...], virtual: bool) -> None:
    """Show the round trip TFO saves: time to first byte, counters and a ladder diagram.

    As root: two network namespaces joined by an emulated link (TUN devices and a forwarder),
    timing plain TCP, TFO's first contact and TFO with a cookie on each stack, then removing
    everything. Without root (or namespaces, or TUN): the same on the sans-I/O engine pair over
    a link in virtual time.
    """
    console = Console()
    reason = None
    if not virtual:
        try:
            check_support("fastopen demo")
        except FastOpenError as exc:
            reason = exc.message
    if virtual or reason is not None:
        if stacks:
            raise click.UsageError("--stack needs the lab (root); the engine runs in virtual time")
        note = "" if reason is None else f" ({reason})"
        console.print(
            f"Running the engine pair over a link in virtual time{note}: the times are the "
            "round trips the segments take, not wall-clock measurements.",
            style="yellow",
        )
        results = [_demo.run_virtual(rtt=rtt, samples=samples, ipv6=ipv6)]
    else:
        chosen = [STACKS[name]() for name in (stacks or sorted(STACKS))]
        with console.status(f"timing {len(chosen)} stack(s) over a {rtt * 1000:g} ms RTT link..."):
            results = _demo.run(chosen, rtt=rtt, samples=samples, ipv6=ipv6)
    console.print(_times_table(results, rtt))
    for result in results:
        console.print(_counters_table(result))
        if result.ladder_ends is not None:
            client, server = result.ladder_ends
            console.print(
                Panel(
                    Text(draw(result.ladder, client, server)),
                    title=f"one TFO exchange with a cookie ({result.stack})",
                    subtitle="times: when each segment left its sender",
                    expand=False,
                )
            )
    if results and results[0].stack != _demo.VIRTUAL:
        console.print(
            "Every namespace, TUN device and process the demo made has been removed.", style="dim"
        )


COMMANDS = [demo]
