"""packetdrill scripts against the engine in virtual time, or against the Linux kernel.

``fastopen packetdrill [--stack engine|kernel] SCRIPT...`` (or :func:`run_file`) parses scripts
in packetdrill's language (:mod:`.script`) and runs each against a fresh stack:

- ``engine`` (the default): an engine :class:`~fastopen.engine.Host` whose clock only moves from
  event to event (:class:`.runner.EngineRunner`), the script's backtick sysctl lines applied to
  that host (:mod:`.shell`);
- ``kernel`` (root): the Linux kernel of a fresh network namespace, through a TUN device, in real
  time, as packetdrill itself works (:mod:`.kernel`); the script's addresses must be inside
  198.18.0.0/15 or fd00::/8 (``--local_ip=`` and ``--remote_ip=`` option lines).

Every packet the stack sends is compared with the script's expectation (:mod:`.packets`), as
packetdrill compares it: consecutive packets that together carry the payload of one script
packet are taken as that TSO/GSO packet (``--strict_segments`` turns this off). The first
difference raises :class:`ScriptError` naming the script line, with the expected and the actual
packet. The team's scripts (tests/packetdrill) run on both stacks; a script that passes on both
shows the engine does what Linux does. Linux's own TFO suite (google/packetdrill's
``gtests/net/tcp/fastopen``) runs with ``bench/packetdrill_linux.py``.

The language covers what that suite uses: ICMP and ICMPv6 errors (``< icmp unreachable
frag_needed mtu 800 [0:1000(1000)]``), flag options (``--tcp_ts_ecr_scaled``,
``--strict_segments``), ``poll``, ``epoll_create``/``epoll_ctl``/``epoll_wait`` (edge-triggered
once per wakeup, one-shot, ``fd=``/``ptr=``/``u32=``/``u64=``), keepalive, TCP_MAXSEG,
TCP_QUICKACK, MSG_NOSIGNAL, ``sendto`` to AF_UNSPEC, ``nstat | grep COUNTER``, ``tcp_ecn``,
``ip route ... features tcp_usec_ts``; beyond the TFO suite, packets with no flags (``-``),
``ioctl(fd, SIOCINQ, [N])``, MSG_EOR, and SO_ZEROCOPY/MSG_ZEROCOPY with ``recvmsg(...,
MSG_ERRQUEUE)`` and its cmsg checked, the IP ECN field (``[ect0]``, ``[ect1]``, ``[ce]``,
``[noecn]``, outbound ``[ect01]``), ``urg N`` (the urgent pointer, always checked as
packetdrill checks it), ``md5 HEX`` options, MSG_OOB, SO_OOBINLINE, SIOCATMARK, IP_FREEBIND,
IP_TOS, IP_MTU_DISCOVER with its ``IP_PMTUDISC_*`` modes,
``pipe`` and ``splice`` from a socket (engine), ``grep PATTERN /proc/net/tcp[6] | grep
PATTERN``, SO_TIMESTAMPING with its SCM_TIMESTAMPING and IP_RECVERR cmsgs (engine). The
engine runs as on packetdrill's tun device, which takes TSO packets.
``bench/packetdrill_linux.py --suite tcp`` runs the rest of ``gtests/net/tcp``.
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
