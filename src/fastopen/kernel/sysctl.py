"""Reading and writing the kernel's TFO sysctls of the current network namespace."""

from __future__ import annotations

import errno
from pathlib import Path

from fastopen.errors import FastOpenError, KernelFeatureMissing, NeedsRoot

PROC_SYS = Path("/proc/sys")


def _path(name: str) -> Path:
    return PROC_SYS / name.replace(".", "/")


def _missing(name: str, path: Path) -> KernelFeatureMissing:
    return KernelFeatureMissing(
        f"sysctl {name} does not exist on this kernel",
        hint=f"{path} is missing: run a kernel that has it, with /proc mounted",
    )


def read(name: str) -> str:
    """The value of sysctl ``name`` (dotted form, e.g. ``net.ipv4.tcp_fastopen``) as text."""
    path = _path(name)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise _missing(name, path) from None
    except PermissionError:
        raise NeedsRoot(f"reading {name} needs root", hint="run as root") from None


def write(name: str, value: str | int) -> None:
    """Set sysctl ``name`` to ``value``; a clear error when not root or the kernel refuses it."""
    path = _path(name)
    try:
        path.write_text(f"{value}\n")
    except FileNotFoundError:
        raise _missing(name, path) from None
    except PermissionError:
        raise NeedsRoot(f"setting {name} needs root", hint="run as root") from None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            shown = "<key>" if name.endswith("_key") else str(value)  # never echo a key
            raise FastOpenError(
                f"the kernel refused {name}={shown}: invalid value",
                hint="Documentation/networking/ip-sysctl.rst lists the values it takes",
            ) from None
        raise


def read_int(name: str) -> int:
    return int(read(name), 0)
