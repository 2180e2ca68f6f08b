"""The ``fastopen`` command: parses arguments, calls one layer, formats output.

Each command lives in a module of this package, named in ``COMMAND_MODULES`` below and imported
only when it is used; what they share (the duration type, ``--netns``, ``--json``) is in
:mod:`fastopen.cli.options`.

Every failure takes one path (:class:`_Group`): bad input, a missing privilege or kernel feature
prints one line, ``fastopen: error: WHAT (hint: WHAT TO DO)`` (with ``--json``, also a JSON
document ``{"error": ..., "hint": ..., "exit_code": 2}`` on stdout) and exits with status 2.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import click

from fastopen.cli.options import Group
from fastopen.errors import FastOpenError

#: The exit status of every error (bad input, missing privilege or kernel feature).
EXIT_ERROR = 2
#: A group run without a command (click 8.2+ raises this; before, it printed the help itself).
_NO_ARGS: tuple[type[click.ClickException], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def _fail(message: str, hint: str | None, as_json: bool) -> NoReturn:
    line = f"fastopen: error: {message}" + (f" (hint: {hint})" if hint else "")
    click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps({"error": message, "hint": hint, "exit_code": EXIT_ERROR}))
    sys.exit(EXIT_ERROR)


def _os_error(exc: OSError) -> tuple[str, str]:
    """A message and a hint for an OSError no layer turned into a FastOpenError."""
    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return f"{where}{what}", "run as root"
    if exc.errno == errno.EROFS:
        return f"{where}{what}", "the file system is read-only: choose another path"
    return f"{where}{what}", "check the path or the device named"


#: The module of ``fastopen.cli`` that defines each command (in its ``COMMANDS``). A command's
#: module is imported when the command is looked up, so that ``fastopen stats`` does not import
#: the engine, the lab and the packetdrill runner (tests/unit/test_cli_conventions.py checks
#: that this table names every command of every module).
COMMAND_MODULES = {
    "cookie": "cookie",
    "cookies": "ops",
    "demo": "demo",
    "disable": "ops",
    "enable": "ops",
    "get": "http",
    "key": "ops",
    "keyd": "ops",
    "lab": "lab",
    "packetdrill": "packetdrill",
    "paths": "paths",
    "probe": "probe",
    "reset": "ops",
    "serve": "http",
    "stats": "ops",
    "status": "ops",
}


class _Group(Group):
    """The top-level group: commands loaded when used, full command summaries in the help, and
    the one error path."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(cmd_name)
        if module is None:
            return None
        commands = importlib.import_module(f"fastopen.cli.{module}").COMMANDS
        return next((c for c in commands if c.name == cmd_name), None)

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        try:
            return super().main(argv, prog_name or "fastopen", standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except _NO_ARGS as exc:  # `fastopen`, `fastopen key`: the help, as click prints it
            click.echo(exc.format_message(), err=True)
            sys.exit(EXIT_ERROR)
        except click.ClickException as exc:
            hint = None
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f"see `{exc.ctx.command_path} --help`"
            _fail(exc.format_message(), hint, as_json)
        except FastOpenError as exc:
            _fail(exc.message, exc.hint, as_json)
        except (click.Abort, KeyboardInterrupt):
            click.echo("fastopen: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `fastopen ... | head`
                sys.exit(0)
            _fail(*_os_error(exc), as_json)


def _version() -> str:
    try:
        return version("fastopen")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    _version(), "-V", "--version", prog_name="fastopen", help="Print the version and exit."
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """TCP Fast Open (RFC 7413) for Python, end to end.

    Errors print one line and exit with status 2; docs/operations.md explains the commands and
    docs/json.md their --json output.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
