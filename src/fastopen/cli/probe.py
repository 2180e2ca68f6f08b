"""``fastopen probe HOST[:PORT]...``: which TFO each path lets through (PATHspider's A/B)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

from fastopen.cli.options import Duration, here, in_netns, json_option, netns_option
from fastopen.errors import FastOpenError
from fastopen.kernel.netns import identify
from fastopen.probe import KernelDriver, Probe, Result, Target, UserspaceDriver, run

_TIMEOUT = Duration("s", minimum=0.0, min_open=True, maximum=3600.0)


@click.command()
@click.argument("targets", nargs=-1, required=True, metavar="HOST[:PORT]...")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=80,
    show_default=True,
    help="The port of targets that name none.",
)
@json_option
@click.option(
    "--driver",
    type=click.Choice(["auto", "userspace", "kernel"]),
    default="auto",
    show_default=True,
    help="userspace: the engine sends every SYN (root, not in the root namespace; kinds 34 and "
    "254); kernel: kernel sockets (kind 34 only). auto: userspace where it can.",
)
@netns_option("Probe from inside the network namespace NETNS.")
@click.option("--pcap", type=click.Path(path_type=Path), help="Record the packets (userspace).")
@click.option(
    "--repeat",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="SYN-data connections a target (to see whether its cookie is stable).",
)
@click.option(
    "--timeout",
    type=_TIMEOUT,
    default="30s",
    show_default=True,
    help="The time bound of one target (a bare number is seconds).",
)
@click.option(
    "--attempt-timeout",
    type=_TIMEOUT,
    default="2.5s",
    show_default=True,
    help="The time bound of one connection attempt (a bare number is seconds).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=16,
    show_default=True,
    help="Targets probed at once.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 10_000.0),
    default=20.0,
    show_default=True,
    help="New connections a second, over all targets.",
)
@click.option("--request", help="The bytes to send (default: an HTTP HEAD); safe to replay.")
def probe(
    targets: tuple[str, ...],
    port: int,
    as_json: bool,
    driver: str,
    netns: str | None,
    pcap: Path | None,
    repeat: int,
    timeout: float,
    attempt_timeout: float,
    concurrency: int,
    rate: float,
    request: str | None,
) -> None:
    """What each target's path does to TFO: tfo, cookie_only, no_cookie, syn_option_blocked,
    syn_data_blocked or offline.

    PATHspider's A/B method: a plain connection, cookie requests with option kinds 34 and 254,
    SYN data with the cookie (repeated: is the cookie stable?), and a plain one again."""
    parsed = [Target.parse(t, port) for t in targets]
    settings = Probe(
        request=None
        if request is None
        else request.encode().decode("unicode_escape").encode("latin-1"),
        repeat=repeat,
        attempt_timeout=attempt_timeout,
        timeout=timeout,
        concurrency=concurrency,
        rate=rate,
    )
    with in_netns(netns):
        chosen = driver
        if chosen == "auto":
            chosen = "userspace" if os.geteuid() == 0 and not identify().host else "kernel"
        if pcap is not None and chosen != "userspace":
            raise FastOpenError("--pcap needs the userspace driver", hint="--driver userspace")
        results = asyncio.run(_probe(parsed, chosen, settings, pcap))
    for result in results:
        click.echo(json.dumps({**here(), **result.to_json()}) if as_json else result.describe())


async def _probe(
    targets: list[Target], driver: str, settings: Probe, pcap: Path | None
) -> list[Result]:
    if driver == "kernel":
        return list(await run(targets, KernelDriver(), settings))
    engine = UserspaceDriver.here(pcap=pcap)
    try:
        return list(await run(targets, engine, settings))
    finally:
        engine.close()


COMMANDS = [probe]
