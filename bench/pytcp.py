"""PyTCP, the other pure-Python userspace TCP stack, as a peer in the benchmarks.

``pmd-pytcp`` (PyPI) is GPL: fastopen never depends on it. :func:`install` puts it into a venv of
its own under ``/work/scratch`` (or ``$FASTOPEN_SCRATCH``), and :class:`PyTcp` runs
``pytcp_driver.py`` with that venv's interpreter in a lab namespace, in the place of the kernel
there: the namespace's address is taken over from its kernel (as ``UserspaceStack.replace_kernel``
does) and routed into PyTCP's TUN device, and given back at the end.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from fastopen.lab.netns import Netns
from fastopen.runtime.tun import give_back, route_into, take_over

VERSION = "0.3.8"
SCRATCH = Path(os.environ.get("FASTOPEN_SCRATCH", "/work/scratch")) / f"pytcp-{VERSION}-venv"
DRIVER = Path(__file__).resolve().with_name("pytcp_driver.py")
DEVICE = "tunpt0"  # PyTCP tells TUN from TAP by the name's first three letters


def install() -> tuple[Path | None, str]:
    """The scratch venv's interpreter with PyTCP (made on first use), or None and why not."""
    python = SCRATCH / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(SCRATCH)],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", f"pmd-pytcp=={VERSION}"],
                check=True, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            return None, f"installing pmd-pytcp {VERSION} failed: {str(detail).strip()[-300:]}"
    probe = subprocess.run(
        [str(python), "-c", "import pmd_pytcp.stack, pmd_pytcp.socket"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return None, f"pmd-pytcp {VERSION} does not import here: {probe.stderr.strip()[-300:]}"
    return python, ""


class PyTcp:
    """PyTCP in ``ns`` on ``addr`` (taken from the kernel there) running one workload."""

    def __init__(self, python: Path, ns: Netns, addr: str, *workload: str) -> None:
        self.ns = ns
        self.python = python
        self.addr = addr
        self.workload = workload
        self.proc: subprocess.Popen[str] | None = None
        self._taken: Any = None

    def __enter__(self) -> PyTcp:
        self._taken = take_over(self.ns)
        try:
            prefix = next(i for _, i in self._taken.addresses if str(i.ip) == self.addr)
            self.proc = self.ns.popen(
                [str(self.python), str(DRIVER), DEVICE, str(prefix), *self.workload],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            self._expect("device")
            route_into(self.ns, DEVICE, [ipaddress.ip_interface(f"{self.addr}/32")])
            self._expect("ready")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _expect(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != word:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"PyTCP did not start ({line!r}): {err.strip()[-500:]}")

    def result(self, timeout: float) -> dict[str, Any]:
        """The workload's last JSON line, once it ends by itself (a get)."""
        assert self.proc is not None
        out, _ = self.proc.communicate(timeout=timeout)
        found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return found

    def stop(self) -> dict[str, Any]:
        """End a server; what it says it served, and its CPU."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.result(30)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        if self._taken is not None:
            give_back(self.ns, self._taken)
            self._taken = None
