"""packetdrill scripts against the engine in virtual time, or against the Linux kernel.

``fastopen packetdrill [--stack engine|kernel] SCRIPT...`` (or :func:`run_file`) parses scripts
in packetdrill's language (:mod:`.script`) and runs each against a fresh stack:

- ``engine`` (the default): an engine :class:`~fastopen.engine.Host` whose clock only moves from
  event to event (:class:`.runner.EngineRunner`), the script's backtick sysctl lines applied to
  that host (:mod:`.shell`);
- ``kernel`` (root): the Linux kernel of a fresh network namespace, through a TUN device, in real
  time, as packetdrill itself works (:mod:`.kernel`); the script's addresses must be inside
  198.18.0.0/15 or fd00::/8 (``--local_ip=`` and ``--remote_ip=`` option lines).

Every packet the stack sends is compared with the script's expectation (:mod:`.packets`). The
first difference raises :class:`ScriptError` naming the script line, with the expected and the
actual packet. The team's scripts (tests/packetdrill) run on both stacks; a script that passes on
both shows the engine does what Linux does.

Needs from the engine: all met (re-checked against fastopen.engine; every team script passes on
both stacks): the blocked writer in SYN-SENT (``EngineSocket.write_pending``, set by the runner
while a blocking send waits for the connection), ``tcpi_delivered``, ``TCP_SYNCNT`` with Linux's
SYN-SENT give-up time, Linux's initial receive window (65535 under defaults.sh),
``connect(AF_UNSPEC)`` (``EngineSocket.disconnect``), MSG_FASTOPEN on a connected socket as a
plain send, a SYN with FIN dropped in LISTEN. Not modelled: ECN (``tcp_ecn``); scripts that set it
to anything but 0 stop there.
"""

from __future__ import annotations

from pathlib import Path

from fastopen.packetdrill.errors import ScriptError, ScriptSyntaxError
from fastopen.packetdrill.run import run_script
from fastopen.packetdrill.runner import Config, RunResult
from fastopen.packetdrill.script import Script, load_script, parse_script


def run_file(path: str | Path, config: Config | None = None) -> RunResult:
    """Parse and run one script file."""
    return run_script(load_script(path, config.defines if config else None), config)


__all__ = [
    "Config",
    "RunResult",
    "Script",
    "ScriptError",
    "ScriptSyntaxError",
    "load_script",
    "parse_script",
    "run_file",
    "run_script",
]
