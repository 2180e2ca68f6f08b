"""``fastopen lab up`` / ``fastopen lab down``: two namespaces joined by an emulated link."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fastopen.cli.options import Duration, Group
from fastopen.errors import FastOpenError
from fastopen.lab.emulator import STATE, Lab, check_support, load_state, remove_detached, save_state

_RATES = {"": 1.0, "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}


def parse_percent(text: str) -> float:
    """``1%`` or ``0.01``, as a probability (0 to 1)."""
    text = text.strip()
    try:
        number = float(text.removesuffix("%"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a percentage like 1% or 0.01") from None
    value = number / 100 if text.endswith("%") else number
    if not 0 <= value <= 1:  # NaN fails too
        raise click.BadParameter(f"{text!r} is not a percentage from 0% to 100%")
    return value


def parse_rate(text: str) -> float:
    """``10mbit``, ``512kbit``, ``1gbit`` (bits per second)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]?bit)?\s*", text.lower())
    if not match:
        raise click.BadParameter(f"{text!r} is not a rate like 10mbit or 512kbit")
    rate = float(match[1]) * _RATES[match[2] or ""]
    if not 1e3 <= rate <= 1e11:
        raise click.BadParameter(f"{text!r} is out of range: give 1kbit to 100gbit")
    return rate


def _convert(parse: Callable[[str], float]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        return None if value is None else parse(value)

    return callback


_PERCENT = _convert(parse_percent)


@click.group(cls=Group)
def lab() -> None:
    """Two namespaces (fo-lab-c, fo-lab-s) joined by an emulated link."""


_LINK_DELAY = Duration("ms", maximum=10.0)


@lab.command()
@click.option(
    "--rtt",
    type=_LINK_DELAY,
    default="0ms",
    show_default=True,
    help="Round-trip time of the link (100ms, 0.2s; a bare number is ms).",
)
@click.option(
    "--jitter",
    type=_LINK_DELAY,
    default="0ms",
    show_default=True,
    help="Each way, a uniform +/- this much on the delay.",
)
@click.option(
    "--loss",
    default="0%",
    callback=_PERCENT,
    show_default=True,
    help="Packets lost, each way (1% or 0.01).",
)
@click.option(
    "--duplicate",
    default="0%",
    callback=_PERCENT,
    show_default=True,
    help="Packets sent twice, each way.",
)
@click.option(
    "--reorder",
    default="0%",
    callback=_PERCENT,
    show_default=True,
    help="Packets held back by --reorder-gap, each way.",
)
@click.option(
    "--reorder-gap",
    type=_LINK_DELAY,
    default="1ms",
    show_default=True,
    help="How long a reordered packet is held back.",
)
@click.option(
    "--rate", callback=_convert(parse_rate), help="Bottleneck rate, e.g. 10mbit (default: none)."
)
@click.option(
    "--queue",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Packets the bottleneck queue holds.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the impairments.")
@click.option(
    "--capture",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record every packet the link carries to this pcap file.",
)
def up(
    rtt: float,
    jitter: float,
    loss: float,
    duplicate: float,
    reorder: float,
    reorder_gap: float,
    rate: float | None,
    queue: int,
    seed: int,
    capture: Path | None,
) -> None:
    """Build the lab and leave it running (state in /run/fastopen/lab.json)."""
    check_support("fastopen lab up")
    if load_state() is not None:
        raise FastOpenError("a lab is already up", hint="fastopen lab down removes it")
    try:
        emulated = Lab(
            rtt=rtt,
            jitter=jitter,
            loss=loss,
            duplicate=duplicate,
            reorder=reorder,
            reorder_gap=reorder_gap,
            rate=rate,
            queue=queue,
            seed=seed,
            capture=None if capture is None else capture.resolve(),
        )
    except ValueError as exc:
        raise FastOpenError(str(exc)) from None
    emulated.start(detached=True, state=STATE)
    config = emulated.config
    state = emulated.detach()
    save_state(state)
    client, server = state["client"], state["server"]
    click.echo(f"lab up: {config.describe()}")
    there, here = emulated.server_addr, emulated.client_addr
    click.echo(f"  client namespace {client}: {here.ipv4} {here.ipv6}")
    click.echo(f"  server namespace {server}: {there.ipv4} {there.ipv6}")
    click.echo(f"  link forwarder pid {state['forwarder']}; state in {STATE}")
    click.echo(f"  try: ip netns exec {server} fastopen serve {there.ipv4} 8080 &")
    click.echo(f"       ip netns exec {client} fastopen get --repeat 3 http://{there.ipv4}:8080/")
    click.echo("  remove it with: fastopen lab down")


@lab.command()
def down() -> None:
    """Remove the lab: forwarder, TUN devices, namespaces."""
    check_support("fastopen lab down")
    state = remove_detached()
    if state is None:
        click.echo("no lab is up")
        return
    click.echo(f"lab down: removed {state['client']}, {state['server']} and the link forwarder")


COMMANDS = [lab]
