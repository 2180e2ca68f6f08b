"""The team's packetdrill scripts against the real Linux kernel (``--stack kernel``).

Every script of tests/packetdrill runs here against the kernel, in real time, in its own
namespace with a TUN device; tests/unit/test_packetdrill_scripts.py runs the same scripts against
the engine. A script passing both shows the engine does what Linux does for its behaviour. The
scripts run in parallel threads (each in its own namespace), so the whole run takes about as long
as the longest script (the SYN-ACK retransmissions: 3 s).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_namespaces

from fastopen.cli import main
from fastopen.packetdrill import Config, RunResult, ScriptError, parse_script, run_file
from fastopen.packetdrill.run import run_script

pytestmark = pytest.mark.live
HERE = Path(__file__).resolve().parent.parent / "packetdrill"
TEAM = sorted(HERE.glob("*.pkt"))
KERNEL = Config(stack="kernel")
HEAD = """--local_ip=198.18.0.1 --remote_ip=198.18.0.2
`../common/defaults.sh
 sysctl -q net.ipv4.tcp_timestamps=0`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 10) = 0
   +0 setsockopt(3, SOL_TCP, TCP_FASTOPEN, [10], 4) = 0
   +0 < S 0:0(0) win 65535 <mss 1460,nop,nop,sackOK,nop,wscale 7,FO,nop,nop>
"""
#: Deliberately wrong scripts: the body after HEAD, the line where the kernel differs, and how.
WRONG = {
    # The kernel's cookie for 198.18.0.2 -> 198.18.0.1 under the defaults.sh key is b7c8184f...
    "cookie": (
        "   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8,"
        "FO 0000000000000000,nop,nop>\n",
        9,
        "bad value outbound TCP option FO",
    ),
    # The kernel retransmits the SYN-ACK after 1 s, not 0.5 s (0.5 s after the SYN-ACK was seen,
    # a little after 0, as packetdrill counts a relative time).
    "timing": (
        "   +0 > S. 0:0(0) ack 1 <...>\n +0.5 > S. 0:0(0) ack 1 <...>\n",
        10,
        "expected outbound packet at 0.5",
    ),
    # No third ACK: the listener has no connection to accept (and is non-blocking).
    "errno": (
        "   +0 > S. 0:0(0) ack 1 <...>\n   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0\n"
        "   +0 accept(3, ..., ...) = 4\n",
        11,
        "runtime error in accept call: expected result 4 but got -1 EAGAIN",
    ),
}
#: Scripts run at once (each in its own namespace): enough to overlap the long ones.
WORKERS = 6


def _run(script: Path | str) -> RunResult | ScriptError:
    try:
        if isinstance(script, Path):
            return run_file(script, KERNEL)
        return run_script(parse_script(script, "wrong.pkt"), KERNEL)
    except ScriptError as exc:
        return exc


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("fo-pd-")}


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, RunResult | ScriptError]]:
    """Every team script and every wrong script, run once against the kernel, in parallel."""
    require_namespaces()
    before = _namespaces()
    jobs: dict[str, Path | str] = {p.name: p for p in TEAM}
    jobs.update({f"wrong-{name}": HEAD + body for name, (body, _, _) in WRONG.items()})
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {name: pool.submit(_run, job) for name, job in jobs.items()}
        yield {name: future.result() for name, future in futures.items()}
    assert _namespaces() <= before  # every namespace the runs made is gone


@pytest.mark.parametrize("path", TEAM, ids=lambda p: p.name)
def test_team_script_passes_on_linux(
    path: Path, outcomes: dict[str, RunResult | ScriptError]
) -> None:
    result = outcomes[path.name]
    assert not isinstance(result, ScriptError), str(result)
    assert result.events == len(parse_script(path.read_text()).events)
    assert result.packets_out > 0


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_script_fails_on_linux_at_its_line(
    name: str, outcomes: dict[str, RunResult | ScriptError]
) -> None:
    error = outcomes[f"wrong-{name}"]
    _, line, reason = WRONG[name]
    assert isinstance(error, ScriptError)
    assert error.line == line
    assert reason in str(error)
    if name == "cookie":
        assert "actual packet:" in str(error)
        assert "FO b7c8184f0bc975d4" in str(error)  # the kernel's own cookie


def test_cli_kernel_stack() -> None:
    require_namespaces()
    script = HERE / "server-cookie-request.pkt"
    result = CliRunner().invoke(main, ["packetdrill", "--stack", "kernel", str(script)])
    assert result.exit_code == 0, result.output
    assert f"ok {script}" in result.output
    assert "s of real time" in result.output


def test_kernel_stack_needs_root() -> None:
    require_namespaces()  # root, to become nobody for a moment
    script = HERE / "server-cookie-request.pkt"
    os.seteuid(65534)
    try:
        result = CliRunner().invoke(main, ["packetdrill", "--stack", "kernel", str(script)])
    finally:
        os.seteuid(0)
    assert result.exit_code == 2  # an error, not a failed script (1)
    assert "fastopen packetdrill --stack kernel needs root" in result.output
    assert "--stack engine" in result.output
