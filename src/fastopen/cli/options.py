"""What every command shares: the duration and time types, ``--netns``, ``--json`` and output.

A command module adds its options from here, so that ``50ms``, ``1.5h`` or ``--netns NAME`` mean
the same everywhere and a bad value is refused the same way (a usage error, exit code 2).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from fastopen.errors import FastOpenError
from fastopen.kernel.netns import entered, namespace_path
from fastopen.ops.stats import netns_label

#: Seconds in each unit a duration may carry.
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h|d|w)?")
#: No duration is longer than this (ten years): beyond it a typo is likelier than a plan.
MAX_DURATION = 10 * 365 * 86400.0


def parse_duration(
    text: str,
    *,
    unit: str = "s",
    minimum: float = 0.0,
    maximum: float = MAX_DURATION,
    min_open: bool = False,
) -> float:
    """Seconds in ``text``: a number and a unit (``50ms``, ``1.5h``, ``10s``, ``1d``), or a bare
    number in ``unit``; NaN, infinities, negatives and values out of bounds are refused."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise FastOpenError(
            f"{text!r} is not a duration",
            hint=f"a number and a unit (us, ms, s, m, h, d, w), e.g. 50ms, 1.5h; a bare number "
            f"is in {unit}",
        )
    seconds = float(match[1]) * UNITS[match[2] or unit]
    low = "more than" if min_open else "at least"
    if (
        not math.isfinite(seconds)
        or seconds < minimum
        or (min_open and seconds == minimum)
        or seconds > maximum
    ):
        raise FastOpenError(
            f"{text!r} is out of range",
            hint=f"give {low} {format_seconds(minimum)} and at most {format_seconds(maximum)}",
        )
    return seconds


def format_seconds(seconds: float) -> str:
    """A bound for an error message: ``0s``, ``1ms``, ``10w``..."""
    for name, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds / size == round(seconds / size):
            return f"{seconds / size:g}{name}"
    return f"{seconds:g}s"


class Duration(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A click type for durations (:func:`parse_duration`); the value is in seconds (a float).

    ``whole=True`` also refuses a fraction of a second (farm intervals must agree exactly).
    """

    name = "duration"

    def __init__(
        self,
        unit: str = "s",
        *,
        minimum: float = 0.0,
        maximum: float = MAX_DURATION,
        min_open: bool = False,
        whole: bool = False,
    ) -> None:
        self.unit, self.minimum, self.maximum = unit, minimum, maximum
        self.min_open, self.whole = min_open, whole

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            seconds = parse_duration(
                str(value),
                unit=self.unit,
                minimum=self.minimum,
                maximum=self.maximum,
                min_open=self.min_open,
            )
        except FastOpenError as exc:
            self.fail(f"{exc.message}: {exc.hint}", param, ctx)
        if self.whole and seconds != int(seconds):
            self.fail(f"{value!r} is not a whole number of seconds", param, ctx)
        return seconds


#: Unix times fastopen accepts: 1970 to 2242 (what 33 bits of seconds hold).
MAX_UNIX_TIME = float(2**33)


class UnixTime(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A Unix time in seconds (a float), finite, from 1970 to 2242."""

    name = "unix-time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            number = float(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a Unix time in seconds (e.g. 1767225600)", param, ctx)
        if not (math.isfinite(number) and 0 <= number < MAX_UNIX_TIME):
            self.fail(f"{value!r} is not a Unix time from 1970 to 2242", param, ctx)
        return number


class Group(click.Group):
    """A group whose help shows each command's summary in full (click cuts them at 45 chars)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


# -- --netns ------------------------------------------------------------------------------------


def _check_netns(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        namespace_path(value)
    except FastOpenError as exc:
        raise click.BadParameter(
            exc.message + (f" ({exc.hint})" if exc.hint else ""), ctx, param
        ) from None
    return value


def netns_option(help: str = "Run inside the network namespace NETNS.") -> Callable[..., Any]:
    """``--netns NETNS``: a name (``/run/netns/NAME``, as ``ip netns`` makes) or the path of a
    namespace file (``/proc/PID/ns/net``); empty names and ``..`` are refused."""
    return click.option(
        "--netns",
        metavar="NETNS",
        callback=_check_netns,
        help=help + " NETNS is a name from `ip netns list` or a path such as /proc/PID/ns/net.",
    )


@contextmanager
def in_netns(netns: str | None) -> Iterator[None]:
    """The block runs in ``netns`` (this thread, and what it starts); nothing when None."""
    with entered(netns) if netns else nullcontext():
        yield


# -- --json and output --------------------------------------------------------------------------


def now() -> float:
    """The timestamp of a sample: Unix time in seconds."""
    return time.time()


def here() -> dict[str, Any]:
    """The fields every JSON document starts with: when, and in which namespace."""
    return {"time": now(), "netns": netns_label()}


@dataclass(frozen=True)
class Out:
    """Where a command's result goes: JSON (one document a line) or text, decided by ``--json``."""

    json: bool

    def emit(self, data: Any, text: str) -> None:
        click.echo(json.dumps(data, sort_keys=True) if self.json else text)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (docs/json.md) instead of text."
)


def ops_command(f: Callable[..., None]) -> Callable[..., None]:
    """Add ``--json`` and ``--netns`` to a command; run it in the namespace, pass it an ``Out``.

    Options given to a parent group (``fastopen cookies --netns X flush``) count too.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, netns: str | None, as_json: bool, **kwargs: Any) -> None:
        parent = click.get_current_context().parent
        if parent is not None:
            netns = netns or parent.params.get("netns")
            as_json = as_json or bool(parent.params.get("as_json"))
        with in_netns(netns):
            f(*args, out=Out(as_json), **kwargs)

    command: Callable[..., None] = json_option(netns_option()(wrapper))
    return command


def print_table(table: Table) -> None:
    """Print a rich table as wide as its content needs (wider than the terminal if it must), so
    that no cell is cut or wrapped (IPv6 addresses, say)."""
    console = Console()
    wide = console.options.update(width=10_000)
    needed = Measurement.get(console, wide, table).maximum
    if needed > console.width:
        console = Console(width=needed)
    console.print(table)
