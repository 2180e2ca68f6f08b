"""Linux's own packetdrill scripts on the engine (and on Linux): pass or fail per script, and N/M.

Takes the path of a google/packetdrill checkout (never copied here) and runs the scripts of
``gtests/net/tcp`` from their own folders, as ``fastopen packetdrill`` does, with the definitions
Linux's TFO run uses::

    -D TFO_COOKIE=3021b9d889017eeb -D CODE=host_unreachable
    -D CMSG_LEVEL_IP=SOL_IP -D CMSG_TYPE_RECVERR=IP_RECVERR

and, as packetdrill's ``run_all.py``, a script whose name ends in ``v6.pkt`` over IPv6 only
(``--ip_version=ipv6 --mtu=1520``, its IPv6 definitions); the others over IPv4 (run_all.py also
runs them over IPv6 and IPv4-mapped IPv6).

``--suite`` picks the folders: ``fastopen`` (the default, Linux's TFO suite), ``tcp`` (every
folder outside ``fastopen/``), or folder names (``--suite close nagle``)::

    .venv/bin/python bench/packetdrill_linux.py /work/scratch/packetdrill [--verbose]
    .venv/bin/python bench/packetdrill_linux.py CHECKOUT --suite tcp \\
        --linux CHECKOUT/gtests/net/packetdrill/packetdrill --save-baseline linux-tcp.txt
    .venv/bin/python bench/packetdrill_linux.py CHECKOUT --suite tcp --baseline linux-tcp.txt

It prints ``PASS`` or ``FAIL`` with the script's path (relative to ``gtests/net/tcp``; to the
fastopen folder for the default suite), the first line of the failure with ``--verbose``, and
``N/M passed`` at the end; the exit code is 0.

The referee is the real packetdrill on this machine's Linux. ``--linux BINARY`` runs every
selected script with that binary too, each in a fresh namespace (``fo-pdl-...``, removed on every
exit path) with addresses inside 198.18.0.0/15 or fd00::/8 (packetdrill's own defaults are not
ours to configure), several at once (``--jobs``); ``--save-baseline FILE`` writes the names Linux
passed, one a line, and ``--baseline FILE`` reads such a file instead of running Linux. With a
baseline the report ends with Linux's count and the scripts Linux passes that the engine fails.

A namespace may only select the congestion controls of the host's
``net.ipv4.tcp_allowed_congestion_control`` (Linux: the others are restricted to the initial
namespace; on these machines the list is ``reno bbr``), so the scripts that ask for CUBIC fail on
Linux. ``--allow-cubic`` adds ``cubic`` to that list (a global setting, not one of TFO's) for the
Linux runs and puts the list back as it was on every exit path, signals included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from ipaddress import ip_address
from pathlib import Path

from fastopen.cookies import KeyRing
from fastopen.errors import FastOpenError
from fastopen.lab.emulator import exit_on_signal
from fastopen.lab.netns import Netns
from fastopen.packetdrill import Config, run_file

TCP = Path("gtests/net/tcp")
FASTOPEN = "fastopen"
#: Folders of gtests/net/tcp that hold no scripts of their own.
NOT_SUITES = frozenset({"common"})
DEFINES = {
    "TFO_COOKIE": "3021b9d889017eeb",
    "CODE": "host_unreachable",
    "CMSG_LEVEL_IP": "SOL_IP",
    "CMSG_TYPE_RECVERR": "IP_RECVERR",
}
#: What packetdrill's run_all.py gives a script whose name ends in ``v6.pkt``, which it runs
#: over IPv6 only: ``--ip_version=ipv6 --mtu=1520`` and these definitions (the cookie is
#: defaults.sh's key's for its IPv6 addresses, the engine's defaults too).
V6_DEFINES = {
    "TFO_COOKIE": "c1d1e9742a47a9bc",
    "CMSG_LEVEL_IP": "SOL_IPV6",
    "CMSG_TYPE_RECVERR": "IPV6_RECVERR",
}
V6_MTU = 1520
#: The real packetdrill's addresses in its namespace: ours, not its 192.168/16 and 2001:db8::/32.
LINUX_V4 = (
    "--local_ip=198.18.0.1",
    "--gateway_ip=198.18.0.2",
    "--netmask_ip=255.255.0.0",
    "--remote_ip=198.19.0.1/24",
)
LINUX_V6 = ("--local_ip=fd00::1", "--gateway_ip=fd00::2", "--remote_ip=fd00:1::1/64")
#: The key ``common/defaults.sh`` sets; ``TFO_COOKIE`` is what it gives packetdrill's own
#: addresses (192.0.2.1 to 192.168.0.1), so on Linux, at ours, the cookie is computed again.
DEFAULTS_KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
#: How long one script may take on Linux (they run in real time; the longest take ~1 min).
LINUX_TIMEOUT = 300.0


ALLOWED_CC = Path("/proc/sys/net/ipv4/tcp_allowed_congestion_control")


@contextlib.contextmanager
def cubic_allowed() -> Iterator[None]:
    """``cubic`` in the host's tcp_allowed_congestion_control for the block (see the module's
    documentation), the list as it was after: SIGTERM too ends the block."""
    before = ALLOWED_CC.read_text().strip()
    if "cubic" in before.split():
        yield
        return
    previous = signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        ALLOWED_CC.write_text(f"{before} cubic\n")
        yield
    finally:
        ALLOWED_CC.write_text(f"{before}\n")
        signal.signal(signal.SIGTERM, previous)


def scripts_of(tcp: Path, suites: Sequence[str]) -> tuple[Path, list[Path]]:
    """The folder names are relative to, and the scripts of ``suites`` under ``tcp``."""
    if list(suites) == [FASTOPEN]:
        return tcp / FASTOPEN, sorted((tcp / FASTOPEN).rglob("*.pkt"))
    if list(suites) == ["tcp"]:
        folders = [
            p for p in sorted(tcp.iterdir()) if p.is_dir() and p.name not in NOT_SUITES | {FASTOPEN}
        ]
    else:
        folders = [tcp / name for name in suites]
        for path in folders:
            if not path.is_dir():
                raise SystemExit(f"no folder {path}")
    return tcp, sorted(script for path in folders for script in path.rglob("*.pkt"))


@contextlib.contextmanager
def folder(path: Path) -> Iterator[None]:
    """Run in ``path`` (the scripts name ``../common/defaults.sh`` relative to their folder)."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def ipv6_only(script: Path) -> bool:
    """Whether packetdrill's run_all.py runs ``script`` over IPv6 only (its name ends in
    ``v6.pkt``), or the script says so itself (``--ip_version=ipv6``)."""
    return script.name.endswith("v6.pkt") or "--ip_version=ipv6" in script.read_text(
        errors="replace"
    )


def run_engine(script: Path) -> str | None:
    """None when ``script`` passes on the engine, else the first line of why it failed."""
    if script.name.endswith("v6.pkt"):
        config = Config(stack="engine", ip_version=6, mtu=V6_MTU, defines=dict(V6_DEFINES))
    else:
        config = Config(stack="engine", defines=dict(DEFINES))
    with folder(script.parent):
        try:
            run_file(script.name, config)
        except FastOpenError as exc:
            return str(exc).splitlines()[0]
        except Exception as exc:  # an engine or runner bug: a failure of this script, go on
            return f"crash: {type(exc).__name__}: {exc}"
    return None


def run_linux(binary: Path, script: Path) -> str | None:
    """None when the real packetdrill passes ``script`` on this Linux, in a namespace of its own,
    else the first line it printed about why."""
    v6 = ipv6_only(script)
    addresses = LINUX_V6 if v6 else LINUX_V4
    remote, local = (a.split("=", 1)[1].split("/")[0] for a in (addresses[-1], addresses[0]))
    cookie = KeyRing.from_text(DEFAULTS_KEY).mint(ip_address(remote), ip_address(local)).hex()
    given = V6_DEFINES if v6 else DEFINES
    defines = [f"-D{name}={value}" for name, value in {**given, "TFO_COOKIE": cookie}.items()]
    if script.name.endswith("v6.pkt"):
        addresses = ("--ip_version=ipv6", f"--mtu={V6_MTU}", *addresses)
    with Netns(tag="pdl") as ns:
        try:
            proc = ns.run(
                [str(binary.resolve()), *addresses, *defines, script.name],
                check=False,
                timeout=LINUX_TIMEOUT,
                cwd=script.parent,
            )
        except subprocess.TimeoutExpired:
            return f"timeout after {LINUX_TIMEOUT:.0f} s"
    if proc.returncode == 0:
        return None
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    # packetdrill names the script line first ("name.pkt:23: error ..."); the lines before it
    # are the script's own shell output (defaults.sh's sysctl warnings, say).
    ours = [line for line in lines if line.startswith(f"{script.name}:")]
    return (ours or lines or [f"exit code {proc.returncode}"])[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a google/packetdrill checkout")
    parser.add_argument(
        "--suite",
        nargs="+",
        default=[FASTOPEN],
        help="fastopen (default), tcp (every folder outside fastopen/), or folder names",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print why each one failed")
    parser.add_argument("--linux", type=Path, help="a built packetdrill: run the scripts on Linux")
    parser.add_argument("--jobs", type=int, default=4, help="Linux runs at once (default 4)")
    parser.add_argument("--baseline", type=Path, help="a file of the scripts Linux passes")
    parser.add_argument("--save-baseline", type=Path, help="write the scripts Linux passed")
    parser.add_argument(
        "--allow-cubic", action="store_true",
        help="let the Linux runs select CUBIC (tcp_allowed_congestion_control, put back after)",
    )  # fmt: skip
    args = parser.parse_args()
    tcp = (args.checkout / TCP).resolve()
    base, scripts = scripts_of(tcp, args.suite)
    if not scripts:
        print(f"no scripts under {tcp} for {' '.join(args.suite)}", file=sys.stderr)
        return 2
    names = [str(script.relative_to(base)) for script in scripts]
    linux: dict[str, str | None] | None = None
    if args.linux is not None:
        allowed = cubic_allowed() if args.allow_cubic else contextlib.nullcontext()
        with allowed:
            pool = ThreadPoolExecutor(max_workers=args.jobs)
            try:
                outcomes = list(pool.map(lambda s: run_linux(args.linux, s), scripts))
            finally:  # interrupted: the scripts not started yet are not run
                pool.shutdown(cancel_futures=True)
        linux = dict(zip(names, outcomes, strict=True))
        if args.save_baseline is not None:
            passed_names = [name for name, problem in linux.items() if problem is None]
            args.save_baseline.write_text("".join(f"{name}\n" for name in passed_names))
    elif args.baseline is not None:
        known = set(args.baseline.read_text().split())
        linux = {name: None if name in known else "not in the baseline" for name in names}
    passed = 0
    lost: list[tuple[str, str]] = []
    for name, script in zip(names, scripts, strict=True):
        problem = run_engine(script)
        if problem is None:
            passed += 1
        elif linux is not None and linux[name] is None:
            lost.append((name, problem))
        line = f"{'PASS' if problem is None else 'FAIL'} {name}"
        if args.verbose and problem is not None:
            line += f"  {problem}"
        if args.linux is not None and linux is not None:
            why = linux[name]
            line += (
                "  [linux PASS]"
                if why is None
                else "  [linux FAIL" + (f": {why}]" if args.verbose else "]")
            )
        print(line, flush=True)
    print(f"{passed}/{len(scripts)} passed")
    if linux is not None:
        linux_passed = sum(problem is None for problem in linux.values())
        print(f"linux: {linux_passed}/{len(scripts)} passed")
        print(f"linux passes, the engine fails: {len(lost)}")
        for name, problem in lost:
            print(f"  {name}  {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
