"""The command line's conventions, checked on the click command tree itself (so a new command or
option is covered without being listed): help everywhere, full summaries, --version, --json
outputs with a schema, errors as one line (and as JSON with --json), exit status 2."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner
from jsoncontract import COMMAND_SCHEMA, SCHEMAS, check, schema

import fastopen.cli
from fastopen.cli import COMMAND_MODULES, main

DOCS = Path(__file__).parents[2] / "docs"


def walk(
    command: click.Command = main, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command of the tree, groups included, with the words that name it."""
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(click.Context(command)):
            sub = command.get_command(click.Context(command), name)
            assert sub is not None
            yield from walk(sub, (*path, name))


def test_the_command_table_names_every_command_of_every_module() -> None:
    defined = {}
    for info in pkgutil.iter_modules(fastopen.cli.__path__):
        module = importlib.import_module(f"fastopen.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            defined[command.name] = info.name
    assert defined == COMMAND_MODULES


def test_a_command_imports_only_its_own_module() -> None:
    code = "import sys; from fastopen.cli import main; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "fastopen.cli.ops" not in loaded and "fastopen.engine" not in loaded
    result = CliRunner().invoke(main, ["stats", "--help"])
    assert result.exit_code == 0 and "--watch" in result.output


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in walk():
        if not (command.help or command.short_help):
            missing.append(" ".join(path) or "fastopen")
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{' '.join(path)} {param.opts[0]}")
    assert missing == []


def test_every_groups_help_shows_every_summary_in_full() -> None:
    for path, group in walk():
        if not isinstance(group, click.Group):
            continue
        result = CliRunner().invoke(main, [*path, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0
        flat = " ".join(result.output.split())
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            assert command is not None and command.help is not None
            first = " ".join(command.help.split("\n\n")[0].split())
            assert f"{name} {first}" in flat, (path, name)  # nothing cut with "..."
        assert "..." not in result.output.split("Commands:")[1], path


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert re.fullmatch(r"fastopen, version \d+\.\d+\.\d+\S*\n", result.output)


def test_every_json_output_has_a_schema_and_docs() -> None:
    with_json = {
        " ".join(path)
        for path, command in walk()
        if any(p.name == "as_json" for p in command.params)
    }
    assert with_json == set(COMMAND_SCHEMA)
    used = {*COMMAND_SCHEMA.values(), "error"}
    assert {p.stem for p in SCHEMAS.glob("*.json")} == used
    documented = (DOCS / "json.md").read_text()
    for name in used:
        schema(name)  # a valid JSON Schema
        assert f"schemas/{name}.json" in documented, name


def test_an_error_is_one_line_exit_2_and_json_with_json() -> None:
    result = CliRunner().invoke(main, ["get", "ftp://example.invalid/", "--json"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("fastopen: error: ")
    error = check(["get"], json.loads(result.stdout))
    assert error["exit_code"] == 2 and "ftp://example.invalid/" in error["error"]
    # a usage error too: one line, exit 2, JSON when asked
    result = CliRunner().invoke(main, ["stats", "--watch", "nan", "--json"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "nan" in check(["stats"], json.loads(result.stdout))["error"]
    assert "Traceback" not in result.output


def test_congestion_is_for_the_userspace_stack() -> None:
    """--congestion picks the userspace stack's algorithm; the kernel's is its sysctl's."""
    result = CliRunner().invoke(main, ["get", "--congestion", "reno", "http://198.18.0.2/"])
    assert result.exit_code == 2 and "tcp_congestion_control" in result.stderr
    result = CliRunner().invoke(main, ["get", "--stack", "userspace", "--congestion", "vegas", "x"])
    assert result.exit_code == 2 and "vegas" in result.stderr
