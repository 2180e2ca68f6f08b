"""The ``fastopen`` command: parses arguments, calls one layer, formats output.

Each command lives in a module of this package and is registered below.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from fastopen.errors import FastOpenError


class _Group(click.Group):
    """A group that turns fastopen's typed errors into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FastOpenError as exc:
            click.echo(f"fastopen: error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"fastopen: hint: {exc.hint}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """TCP Fast Open (RFC 7413) for Python, end to end."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    from fastopen.cli import cookie, demo, http, lab, ops, packetdrill, paths, probe

    for module in (cookie, demo, http, lab, ops, packetdrill, paths, probe):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
