"""The JSON contract of the command line (docs/json.md): which schema (docs/schemas/) each command's
``--json`` output follows, and a check of a document against it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import click
import jsonschema
from click.testing import CliRunner, Result

from fastopen.cli import main

SCHEMAS = Path(__file__).parents[1] / "docs" / "schemas"
#: Each command with --json, by its words, and the schema its output follows.
COMMAND_SCHEMA = {
    "status": "status",
    "enable": "enable",
    "disable": "disable",
    "reset": "reset",
    "key generate": "key-change",
    "key set": "key-change",
    "key rotate": "key-change",
    "key retire": "key-change",
    "key show": "key-show",
    "key derive": "key-derive",
    "keyd": "keyd",
    "stats": "stats",
    "cookies": "cookies-list",
    "cookies list": "cookies-list",
    "cookies flush": "cookies-flush",
    "get": "get",
    "probe": "probe",
    "paths": "paths-list",
    "paths list": "paths-list",
    "paths reset": "paths-reset",
}


@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def command_words(args: Sequence[str]) -> str:
    """The command ``args`` run, as words (``key rotate``), options skipped."""
    command: click.Command = main
    words: list[str] = []
    for arg in args:
        if not isinstance(command, click.Group):
            break
        found = command.get_command(click.Context(command), arg)
        if found is not None:
            command, words = found, [*words, arg]
    return " ".join(words)


def check(args: Sequence[str], doc: Any) -> Any:
    """``doc``, once it follows the schema of the command ``args`` ran (or the error schema)."""
    name = "error" if isinstance(doc, dict) and "exit_code" in doc else None
    jsonschema.validate(doc, schema(name or COMMAND_SCHEMA[command_words(args)]))
    return doc


def cli(*args: str) -> Result:
    """``fastopen ARGS`` run in this process (its thread's namespace)."""
    return CliRunner().invoke(main, list(args))


def as_json(*args: str) -> Any:
    """The JSON document of ``fastopen ARGS --json``, once it follows the command's schema."""
    result = cli(*args, "--json")
    assert result.exit_code == 0, (result.output, result.stderr)
    return check(args, json.loads(result.stdout))
