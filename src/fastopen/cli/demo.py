"""``fastopen demo``: TFO saves a round trip, shown over an emulated 100 ms link."""

from __future__ import annotations

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

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
    table = Table(title=f"Time to first byte over a {rtt * 1000:g} ms RTT link")
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
    table = Table(title=f"TFO counters ({result.stack} stack: {source})")
    table.add_column("counter")
    table.add_column(f"client {result.client_ns}", justify="right")
    table.add_column(f"server {result.server_ns}", justify="right")
    for name, (client, server) in result.counters.items():
        table.add_row(name, str(client), str(server))
    return table


@click.command()
@click.option("--rtt", type=float, default=100.0, show_default=True, help="Link RTT in ms.")
@click.option("-n", "--samples", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--ipv6", is_flag=True, help="Use the lab's IPv6 addresses.")
@click.option(
    "--stack",
    "stacks",
    type=click.Choice(sorted(STACKS)),
    multiple=True,
    help="The stacks to compare (default: every stack available).",
)
def demo(rtt: float, samples: int, ipv6: bool, stacks: tuple[str, ...]) -> None:
    """Show the round trip TFO saves: time to first byte, counters and a ladder diagram.

    Builds two network namespaces joined by an emulated link (TUN devices and a forwarder),
    times plain TCP, TFO's first contact and TFO with a cookie, and removes everything again.
    Needs root.
    """
    check_support("fastopen demo")
    console = Console()
    chosen = [STACKS[name]() for name in (stacks or sorted(STACKS))]
    with console.status(f"timing {len(chosen)} stack(s) over a {rtt:g} ms RTT link..."):
        results = _demo.run(chosen, rtt=rtt / 1000, samples=samples, ipv6=ipv6)
    console.print(_times_table(results, rtt / 1000))
    for result in results:
        console.print(_counters_table(result))
        if result.ladder_ends is not None:
            client, server = result.ladder_ends
            console.print(
                Panel(
                    Text(draw(result.ladder, client, server)),
                    title=f"one TFO exchange with a cookie ({result.stack} stack)",
                    subtitle="times: when the link read each segment from its sender",
                    expand=False,
                )
            )
    console.print(
        "Every namespace, TUN device and process the demo made has been removed.", style="dim"
    )


COMMANDS = [demo]
