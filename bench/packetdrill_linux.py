"""Linux's own TFO packetdrill suite on the engine: pass or fail per script, and the count.

Takes the path of a google/packetdrill checkout (never copied here) and runs every script of
``gtests/net/tcp/fastopen`` from its own folder, as ``fastopen packetdrill`` does, with the
definitions Linux's run uses::

    -D TFO_COOKIE=3021b9d889017eeb -D CODE=host_unreachable
    -D CMSG_LEVEL_IP=SOL_IP -D CMSG_TYPE_RECVERR=IP_RECVERR

    .venv/bin/python bench/packetdrill_linux.py /work/scratch/packetdrill [--verbose]

It prints ``PASS`` or ``FAIL`` with the script's path (relative to the fastopen folder), the
first line of the failure with ``--verbose``, and ``N/M passed`` at the end; the exit code is 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from fastopen.errors import FastOpenError
from fastopen.packetdrill import Config, run_file

SUITE = Path("gtests/net/tcp/fastopen")
DEFINES = {
    "TFO_COOKIE": "3021b9d889017eeb",
    "CODE": "host_unreachable",
    "CMSG_LEVEL_IP": "SOL_IP",
    "CMSG_TYPE_RECVERR": "IP_RECVERR",
}


@contextlib.contextmanager
def folder(path: Path) -> Iterator[None]:
    """Run in ``path`` (the scripts name ``../common/defaults.sh`` relative to their folder)."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_one(script: Path) -> str | None:
    """None when ``script`` passes, else the first line of why it failed."""
    with folder(script.parent):
        try:
            run_file(script.name, Config(stack="engine", defines=dict(DEFINES)))
        except FastOpenError as exc:
            return str(exc).splitlines()[0]
        except Exception as exc:  # an engine or runner bug: a failure of this script, go on
            return f"crash: {type(exc).__name__}: {exc}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", type=Path, help="a google/packetdrill checkout")
    parser.add_argument("--verbose", "-v", action="store_true", help="print why each one failed")
    args = parser.parse_args()
    suite = (args.checkout / SUITE).resolve()
    scripts = sorted(suite.rglob("*.pkt"))
    if not scripts:
        print(f"no scripts under {suite}", file=sys.stderr)
        return 2
    passed = 0
    for script in scripts:
        problem = run_one(script)
        name = script.relative_to(suite)
        if problem is None:
            passed += 1
            print(f"PASS {name}")
        else:
            print(f"FAIL {name}" + (f"  {problem}" if args.verbose else ""))
    print(f"{passed}/{len(scripts)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
