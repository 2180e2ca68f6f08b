"""``fastopen paths``: the negative cache, paths where TFO is off after SYN data failed."""

from __future__ import annotations

import time

import click

from fastopen.cli.options import Group, Out, here, json_option, netns_option, ops_command
from fastopen.errors import FastOpenError
from fastopen.kernel import pathcache


@click.group(cls=Group, invoke_without_command=True)
@json_option
@netns_option()
@click.pass_context
def paths(ctx: click.Context, netns: str | None, as_json: bool) -> None:
    """Paths where SYN data was lost or reset (TFO off until the backoff): list or reset."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_paths, netns=netns, as_json=as_json)


@paths.command("list")
@ops_command
def list_paths(out: Out) -> None:
    """Each path: failures, how, and when TFO is tried again."""
    now = time.time()
    found = pathcache.entries()
    lines = [f"{'path':32} {'failures':>8} {'how':6} {'retry in':>10}"] + [
        f"{e.address}:{e.port!s:<{31 - len(e.address)}} {e.failures:>8} {e.reason.value:6} "
        f"{max(0.0, e.retry_at - now):>9.0f}s"
        for e in found
    ]
    out.emit({**here(), "entries": [e.to_json() for e in found]}, "\n".join(lines))


def _split(target: str) -> tuple[str, int | None]:
    host, sep, port = target.rpartition(":")
    if sep and port.isdigit() and (host.count(":") == 0 or host.startswith("[")):
        return host.strip("[]"), int(port)
    if target.count(":") == 1:
        raise FastOpenError(f"{target!r}: give ADDRESS or ADDRESS:PORT")
    return target.strip("[]"), None


@paths.command("reset")
@click.argument("target", required=False, metavar="[ADDRESS[:PORT]]")
@ops_command
def reset_paths(out: Out, target: str | None) -> None:
    """Forget the failures of TARGET's paths, or of all: TFO is tried again at once."""
    address, port = _split(target) if target else (None, None)
    removed = pathcache.reset(address, port)
    out.emit({**here(), "reset": removed, "target": target}, f"reset {removed} path(s)")


COMMANDS = [paths]
