"""Runs a parsed script on the stack its configuration names: the engine or the kernel.

The one place that knows both backends, so that :mod:`.runner` (the shared runner and the
engine backend) and :mod:`.kernel` (which builds on the runner) never import each other both ways.
"""

from __future__ import annotations

import dataclasses

from fastopen.packetdrill.errors import ScriptSyntaxError
from fastopen.packetdrill.runner import Config, EngineRunner, RunResult
from fastopen.packetdrill.script import Script


def run_script(script: Script, config: Config | None = None) -> RunResult:
    """Run a parsed script on ``config.stack``; raises :class:`ScriptError` at the first
    difference (and :class:`~fastopen.errors.FastOpenError` when the kernel backend cannot run)."""
    cfg = dataclasses.replace(config) if config is not None else Config()
    cfg.apply(script.options, script.path)
    cfg.apply(cfg.command_line, "command line")
    if cfg.stack == "kernel":
        from fastopen.packetdrill.kernel import run_kernel  # namespaces, TUN: only when asked

        return run_kernel(script, cfg)
    if cfg.stack != "engine":
        raise ScriptSyntaxError(script.path, 0, f"unknown stack {cfg.stack!r}")
    return EngineRunner(script, cfg).run()
