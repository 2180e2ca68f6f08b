"""The TFO key of a server: a private key store, the kernel's key, rotation with a grace time.

The kernel forgets ``net.ipv4.tcp_fastopen_key`` at reboot (and makes up a random one on first
use), so every cookie a client holds becomes invalid. The store keeps the ring (primary and
backup) in a file of mode 0600, with the time of the last rotation, and ``key set`` puts it back
at boot. A rotation keeps the old key as backup: clients' cookies stay valid and the server hands
them new ones (the kernel counts those in ``TCPFastOpenPassiveAltKey``); ``retire`` drops the
backup once the grace time is over.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastopen.cookies import Key, KeyRing
from fastopen.errors import FastOpenError, KeyFormatError
from fastopen.kernel import sysctl
from fastopen.ops.farm import format_duration
from fastopen.ops.files import PRIVATE, read_private, staged_write

SYSCTL = "net.ipv4.tcp_fastopen_key"
STORE_DIR = Path("/var/lib/fastopen")
#: How long a retired key stays accepted by default: as long as a farm interval.
DEFAULT_GRACE = 86400.0
_FORMAT = 1


def default_store(netns: str | None = None) -> Path:
    """The store of the host, or of the network namespace ``netns`` (keys are per namespace)."""
    if netns is None:
        return STORE_DIR / "tfo-key.json"
    return STORE_DIR / "netns" / netns / "tfo-key.json"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store holds: the ring and when it was last rotated (Unix time)."""

    ring: KeyRing
    rotated_at: float | None = None


def load(path: Path) -> Stored | None:
    """The store at ``path``, or None when there is none; refuses a file others can read."""
    if not path.exists():
        return None
    raw = read_private(path)
    try:
        doc = json.loads(raw)
        ring = KeyRing.from_text(doc["keys"])
        rotated_at = doc.get("rotated_at")
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc.message}", hint=exc.hint) from None
    except (ValueError, KeyError, TypeError):
        raise KeyFormatError(
            f"{path} is not a fastopen key store",
            hint="write a new one with `fastopen key generate --force` or `fastopen key set`",
        ) from None
    return Stored(ring, float(rotated_at) if rotated_at is not None else None)


def _encode(stored: Stored) -> bytes:
    doc = {"format": _FORMAT, "keys": stored.ring.to_text(), "rotated_at": stored.rotated_at}
    return (json.dumps(doc) + "\n").encode()


def kernel_ring() -> KeyRing | None:
    """The key ring of this network namespace, or None while no key is set (all zeros)."""
    ring = KeyRing.from_text(sysctl.read(SYSCTL))
    if not any(ring.primary.raw):
        return None
    return ring


def apply(ring: KeyRing) -> None:
    """Give the kernel ``ring`` (primary, and backup if any) for this network namespace."""
    sysctl.write(SYSCTL, ring.to_text())


def install(path: Path, stored: Stored) -> None:
    """Apply ``stored`` to the kernel and save it; when either fails, neither happens."""
    with staged_write(path, _encode(stored), mode=PRIVATE, dir_mode=0o700):
        apply(stored.ring)


def generate(path: Path, *, force: bool = False) -> Stored:
    """A fresh primary key (no backup), stored and applied."""
    if path.exists() and not force:
        raise FastOpenError(
            f"a key is already stored in {path}",
            hint="`fastopen key rotate` replaces it and keeps it as backup; --force overwrites it",
        )
    stored = Stored(KeyRing.generate())
    install(path, stored)
    return stored


def set_ring(path: Path, ring: KeyRing) -> Stored:
    """Store and apply ``ring`` as given (a rotation time is kept only with a backup)."""
    stored = Stored(ring, time.time() if ring.backups else None)
    install(path, stored)
    return stored


def restore(path: Path) -> Stored:
    """Apply the stored ring again (at boot, say)."""
    stored = load(path)
    if stored is None:
        raise FastOpenError(
            f"no key stored in {path}", hint="`fastopen key generate` makes and stores one"
        )
    apply(stored.ring)
    return stored


def current(path: Path) -> Stored:
    """The stored ring; without a store, the kernel's (an operator set it by hand)."""
    stored = load(path)
    if stored is not None:
        return stored
    ring = kernel_ring()
    if ring is None:
        raise FastOpenError("no TFO key is set", hint="`fastopen key generate` makes one")
    return Stored(ring)


def rotate(path: Path, new: Key | None = None, *, now: float | None = None) -> Stored:
    """A new primary; the old primary becomes the backup, so its cookies stay valid."""
    old = current(path)
    stored = Stored(old.ring.rotated(new), time.time() if now is None else now)
    install(path, stored)
    return stored


def grace_left(stored: Stored, grace: float, now: float) -> float | None:
    """Seconds until the backup may be retired (None when the rotation time is unknown)."""
    if stored.rotated_at is None:
        return None
    return max(0.0, stored.rotated_at + grace - now)


def retire(
    path: Path, *, grace: float = DEFAULT_GRACE, force: bool = False, now: float | None = None
) -> Stored:
    """Drop the backup key once ``grace`` seconds have passed since the rotation."""
    now = time.time() if now is None else now
    old = current(path)
    if not old.ring.backups:
        raise FastOpenError(
            "there is no backup key to retire",
            hint="nothing to do: only the primary key is set (`fastopen key show`)",
        )
    left = grace_left(old, grace, now)
    if not force and left != 0.0:
        when = (
            "the time of the rotation is unknown"
            if left is None
            else f"{format_duration(left)} left"
        )
        raise FastOpenError(
            f"the backup key is still in its grace time ({when})",
            hint="clients that have not come back since the rotation hold cookies of the backup "
            "key and would lose a round trip; wait, or retire now with --force",
        )
    stored = Stored(old.ring.retired())
    install(path, stored)
    return stored


def describe(ring: KeyRing | None, *, reveal: bool) -> dict[str, Any]:
    """A ring for output: masked unless ``reveal``."""
    if ring is None:
        return {"set": False}
    show = Key.to_text if reveal else Key.masked
    return {
        "set": True,
        "primary": show(ring.primary),
        "backup": show(ring.backups[0]) if ring.backups else None,
    }
