"""Files that hold secrets or configuration: private reads, and writes committed only on success."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from fastopen.errors import FastOpenError, NeedsRoot, UnsafePermissions

PRIVATE = 0o600


def check_private(path: Path) -> None:
    """Refuse a secret file that anyone but its owner can read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise FastOpenError(f"{path} does not exist", hint="check the path given") from None
    except OSError as exc:
        raise FastOpenError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None
    if mode & 0o077:
        raise UnsafePermissions(
            f"{path} is open to other users (mode {mode:04o}); a TFO secret must be private",
            hint=f"chmod 600 {path}",
        )


def read_private(path: Path) -> bytes:
    """The bytes of a secret file, once :func:`check_private` accepts it."""
    check_private(path)
    try:
        return path.read_bytes()
    except PermissionError:
        raise NeedsRoot(f"reading {path} needs root", hint="run as root") from None
    except OSError as exc:  # a directory, say
        raise FastOpenError(f"cannot read {path}: {exc.strerror}", hint="check the path") from None


@contextlib.contextmanager
def staged_write(path: Path, data: bytes, *, mode: int, dir_mode: int = 0o755) -> Iterator[None]:
    """Write ``data`` beside ``path`` now, and put it in place only if the block succeeds.

    So a change that must go to the kernel and to a file changes neither when either fails.
    The file is created with ``mode`` from the start (no window where a key is readable).
    """
    try:
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except PermissionError as exc:
        if os.geteuid() != 0:
            raise NeedsRoot(f"writing {path} needs root", hint="run as root") from None
        raise FastOpenError(
            f"cannot write {path}: {exc.strerror}", hint="choose a path on a writable file system"
        ) from None
    except OSError as exc:  # read-only, not a directory, /proc...
        raise FastOpenError(
            f"cannot write {path}: {exc.strerror}", hint="choose a path on a writable file system"
        ) from None
    try:
        os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        yield
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise FastOpenError(
                f"cannot put {path} in place: {exc.strerror}", hint="check the path given"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
