"""``fastopen lab up`` / ``fastopen lab down``: two namespaces joined by an emulated link."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fastopen.cli.options import Duration, Group
from fastopen.errors import FastOpenError
from fastopen.lab.emulator import (
    STATE,
    Lab,
    check_support,
    lab_namespaces,
    load_state,
    remove_detached,
    save_state,
)
from fastopen.lab.farm import CLIENT_ADDR, Farm, server_address
from fastopen.lab.farm import remove as remove_farm
from fastopen.lab.middlebox import MIDDLEBOXES

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
@click.option(
    "--middlebox",
    "middleboxes",
    multiple=True,
    metavar="NAME[:K=V,...]",
    help="A middlebox in a router between link and server (repeatable; see lab middleboxes).",
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
    middleboxes: tuple[str, ...],
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
            middleboxes=middleboxes,
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
    if "router" in state:
        boxes = ", ".join(state["middleboxes"])
        click.echo(f"  router namespace {state['router']} between link and server: {boxes}")
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
    # a lab stopped while coming up recorded its namespaces only, and had no forwarder yet
    removed = lab_namespaces(state)
    if state.get("forwarder"):
        removed.append("the link forwarder")
    if len(removed) > 1:
        removed[-2:] = [f"{removed[-2]} and {removed[-1]}"]
    click.echo(f"lab down: removed {', '.join(removed) or 'nothing'}")


@lab.command("middleboxes")
def list_middleboxes() -> None:
    """The middleboxes lab up --middlebox can put between the link and the server."""
    for box in MIDDLEBOXES.values():
        params = ",".join(f"{k}={v}" for k, v in box.defaults.items())
        click.echo(f"{box.name:<20} {box.summary}" + (f" [{params}]" if params else ""))
    click.echo(
        f"{'farm':<20} servers behind a direct-server-return load balancer, with or without "
        "a shared key: fastopen lab farm up [--servers N] [--own-keys]"
    )


FARM_STATE = STATE.with_name("farm.json")


@lab.group(cls=Group)
def farm() -> None:
    """A farm of servers behind a direct-server-return load balancer (fo-farm-*)."""


@farm.command("up")
@click.option(
    "--servers", type=click.IntRange(2, 8), default=2, show_default=True, help="How many servers."
)
@click.option("--own-keys", is_flag=True, help="Each server its own TFO key (no shared key).")
@click.option(
    "--policy",
    default="hash",
    show_default=True,
    help="How SYNs are spread: hash, round_robin or a server index.",
)
def farm_up(servers: int, own_keys: bool, policy: str) -> None:
    """Build the farm and leave it running (state in /run/fastopen/farm.json)."""
    check_support("fastopen lab farm up")
    if load_state(FARM_STATE) is not None:
        raise FastOpenError("a farm is already up", hint="fastopen lab farm down removes it")
    chosen: str | int = int(policy) if policy.isdigit() else policy
    built = Farm(servers=servers, shared_key=not own_keys, policy=chosen).start()
    try:
        state = built.detach()
    except BaseException:
        built.close()
        raise
    save_state(state, FARM_STATE)
    key = "own keys" if own_keys else "a shared key"
    click.echo(f"farm up: {servers} servers with {key}, VIP {state['vip']}, policy {policy}")
    click.echo(f"  client namespace {state['client']}: {CLIENT_ADDR}")
    click.echo(f"  load balancer namespace {state['lb']}")
    for index, name in enumerate(built_servers(state)):
        click.echo(f"  server {index} namespace {name}: {server_address(index)}, VIP on lo")
    click.echo("  remove it with: fastopen lab farm down")


def built_servers(state: dict[str, Any]) -> list[str]:
    return [str(n) for n in state.get("servers", [])]


@farm.command("down")
def farm_down() -> None:
    """Remove the farm's namespaces."""
    check_support("fastopen lab farm down")
    state = load_state(FARM_STATE)
    if state is None:
        click.echo("no farm is up")
        return
    gone = remove_farm(state)
    FARM_STATE.unlink(missing_ok=True)
    click.echo(f"farm down: removed {', '.join(gone)}")


COMMANDS = [lab]
