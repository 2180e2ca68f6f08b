"""packetdrill scripts against the engine, in virtual time.

``fastopen packetdrill SCRIPT...`` (or :func:`run_file`) parses scripts in packetdrill's
language (:mod:`.script`), runs each against a fresh engine :class:`~fastopen.engine.Host` whose
clock only moves from event to event (:mod:`.runner`), applies the script's backtick sysctl
lines to that host (:mod:`.shell`), and compares every packet the engine sends with the
script's expectation (:mod:`.packets`). The first difference raises :class:`ScriptError`
naming the script line, with the expected and the actual packet.

Needs from the engine (the runner works around none of them; the scripts that need them stop
at that line, see tests/packetdrill/linux/README.md):

- a blocked writer in SYN-SENT: Linux holds the ACK of the SYN-ACK back while a blocking
  sendto/write waits for the connection (``sk_write_pending`` in
  ``tcp_rcv_synsent_state_process``), so the rest of the data leaves with it (``P. 901:1901``).
  The engine sends a bare ACK at once. Wanted: a way to mark a socket as having a writer waiting
  (or to queue data in SYN-SENT), so that the first ACK carries the data, as Linux's does;
- ``tcpi_delivered`` (and ``tcpi_delivered_ce``) in ``TcpInfo``;
- ``TCP_SYNCNT`` (per-socket SYN retries) in ``setsockopt``;
- the initial receive window: Linux offers min(rounddown(tcp_win_from_space(rcvbuf), mss), 65535).
  Measured on this 6.18 kernel in namespaces, its SYN-ACK carries 64240 with the stock tcp_rmem
  (131072) and 65535 with packetdrill's defaults.sh (tcp_rmem[1] = 540000), with or without
  window scaling in the SYN. The engine offers rounddown(min(65535, rmem), mss) = 64240 for any
  rmem (the runner sets ``host.rmem`` from tcp_rmem). The selftest
  tcp_fastopen_server_reset-after-disconnect.pkt stops there;
- ``connect(AF_UNSPEC)`` (Linux ``tcp_disconnect``: RST, back to CLOSE, reusable socket);
- ECN (``tcp_ecn``) is not modelled: scripts that set it to anything but 0 stop there.
"""

from __future__ import annotations

from pathlib import Path

from fastopen.engine.packetdrill.errors import ScriptError, ScriptSyntaxError
from fastopen.engine.packetdrill.runner import Config, RunResult, run_script
from fastopen.engine.packetdrill.script import Script, load_script, parse_script


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
