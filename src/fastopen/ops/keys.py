"""The TFO key of a server: a private key store, the kernel's key, rotation with a grace time.

The kernel forgets ``net.ipv4.tcp_fastopen_key`` at reboot (and makes up a random one on first
use), so every cookie a client holds becomes invalid. The store keeps the ring (primary and
backup) in a file of mode 0600, with the time of the last rotation, and ``key set`` puts it back
at boot. A rotation keeps the old key as backup: clients' cookies stay valid and the server hands
them new ones (the kernel counts those in ``TCPFastOpenPassiveAltKey``); ``retire`` drops the
backup once the grace time is over.

The kernel's key always comes first: a rotation keeps the key the kernel holds now as the backup
(the one every client's cookie was made with), and a store that disagrees with the kernel is
reported (:func:`compare`) and never silently put in its place. The store belongs to the network
namespace the command runs in, however it got there (``--netns``, ``ip netns exec``): it is found
by the namespace's identity (:func:`fastopen.kernel.netns.identify`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastopen.cookies import Key, KeyRing
from fastopen.errors import FastOpenError, KeyFormatError
from fastopen.kernel import sysctl
from fastopen.kernel.netns import identify
from fastopen.ops.farm import format_duration
from fastopen.ops.files import PRIVATE, read_private, staged_write

SYSCTL = "net.ipv4.tcp_fastopen_key"
#: Where key stores live (``$FASTOPEN_KEY_DIR`` to put them elsewhere).
STORE_DIR = Path(os.environ.get("FASTOPEN_KEY_DIR", "/var/lib/fastopen"))
#: How long a retired key stays accepted by default: as long as a farm interval.
DEFAULT_GRACE = 86400.0
_FORMAT = 1


def default_store() -> Path:
    """The store of the calling thread's network namespace: the host's, or one per namespace
    (``netns/NAME/``, or ``netns/inode-N/`` for a namespace without a name)."""
    here = identify()
    if here.host:
        return STORE_DIR / "tfo-key.json"
    return STORE_DIR / "netns" / here.label / "tfo-key.json"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the store holds: the ring, when it was last rotated (Unix time), and who wrote it
    (``keyd`` for farm keys, else None) with the farm interval's index."""

    ring: KeyRing
    rotated_at: float | None = None
    source: str | None = None
    interval: int | None = None


def load(path: Path) -> Stored | None:
    """The store at ``path``, or None when there is none; refuses a file others can read."""
    try:
        if not path.exists():
            return None
    except OSError as exc:
        raise FastOpenError(f"cannot read {path}: {exc.strerror}", hint="check --store") from None
    raw = read_private(path)
    try:
        doc = json.loads(raw)
        ring = KeyRing.from_text(doc["keys"])
        rotated_at = doc.get("rotated_at")
        source, interval = doc.get("source"), doc.get("interval")
        stored = Stored(
            ring,
            float(rotated_at) if rotated_at is not None else None,
            str(source) if source is not None else None,
            int(interval) if interval is not None else None,
        )
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc.message}", hint=exc.hint) from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise KeyFormatError(
            f"{path} is not a fastopen key store",
            hint="write a new one with `fastopen key generate --force` or `fastopen key set`",
        ) from None
    return stored


def _encode(stored: Stored) -> bytes:
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "keys": stored.ring.to_text(),
        "rotated_at": stored.rotated_at,
    }
    if stored.source is not None:
        doc["source"], doc["interval"] = stored.source, stored.interval
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


# -- the store against the kernel ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    """The store and the kernel hold different keys: which one is newer, and what to do."""

    newer: str  # "kernel", "store" or "unknown"
    reason: str
    advice: str

    def text(self) -> str:
        return f"the kernel's key differs from the stored one: {self.reason}; {self.advice}"

    def to_json(self) -> dict[str, str]:
        return {"newer": self.newer, "reason": self.reason, "advice": self.advice}


def _boot_time() -> float:
    with open("/proc/uptime") as f:
        return time.time() - float(f.read().split()[0])


def compare(path: Path, stored: Stored | None, kernel: KeyRing | None) -> Disagreement | None:
    """None when the store and the kernel agree (or there is no store); else which is newer.

    The kernel is newer when it rotated past the store (its backup is the stored primary) or the
    store was written before this boot; the store is newer when its backup is the kernel's
    primary (a rotation stored but not applied) or the kernel has no key (a reboot).
    """
    if stored is None or stored.ring == kernel:
        return None
    if kernel is None:
        return Disagreement(
            "store",
            "the kernel has no key (after a reboot, say)",
            "`fastopen key set` applies the stored one",
        )
    keep = (
        "`fastopen key rotate` keeps the kernel's key as backup and stores the result; "
        "`fastopen key set --from-kernel` stores the kernel's key as it is"
    )
    if stored.ring.primary in kernel.backups:
        return Disagreement("kernel", "the kernel rotated past the stored key", keep)
    if kernel.primary in stored.ring.backups:
        return Disagreement(
            "store",
            "the store holds a rotation the kernel never got",
            "`fastopen key set --force` applies the stored ring (the kernel's key stays its "
            "backup)",
        )
    if stored.source == "keyd":
        return Disagreement(
            "kernel",
            "the key was changed after `fastopen keyd` applied the farm key",
            "keyd puts the farm key back at its next check; stop whoever set the other one",
        )
    try:
        written = os.stat(path).st_mtime
    except OSError:
        written = None
    if written is not None and written < _boot_time():
        return Disagreement("kernel", "the store was written before this boot", keep)
    return Disagreement(
        "unknown",
        "the kernel's key was set outside fastopen (by sysctl, say)",
        keep + "; every client's cookie is made with the kernel's key",
    )


def _refuse_if_disagreeing(path: Path, stored: Stored | None, kernel: KeyRing | None) -> None:
    found = compare(path, stored, kernel)
    if found is not None and kernel is not None:
        raise FastOpenError(found.text(), hint=found.advice)


def generate(path: Path, *, force: bool = False) -> Stored:
    """A fresh primary key, stored and applied; a key the kernel holds stays as the backup."""
    if path.exists() and not force:
        raise FastOpenError(
            f"a key is already stored in {path}",
            hint="`fastopen key rotate` replaces it and keeps it as backup; --force overwrites it",
        )
    kernel = kernel_ring()
    # clients hold cookies of the kernel's key, if it has one: it stays valid as the backup
    stored = Stored(KeyRing.generate()) if kernel is None else Stored(kernel.rotated(), time.time())
    install(path, stored)
    return stored


def set_ring(path: Path, ring: KeyRing) -> Stored:
    """Store and apply ``ring`` as given (a rotation time is kept only with a backup)."""
    stored = Stored(ring, time.time() if ring.backups else None)
    install(path, stored)
    return stored


def adopt(path: Path) -> Stored:
    """Store the kernel's ring as it is (a key an operator set by sysctl, say)."""
    kernel = kernel_ring()
    if kernel is None:
        raise FastOpenError("the kernel has no TFO key", hint="`fastopen key generate` makes one")
    stored = Stored(kernel, time.time() if kernel.backups else None)
    install(path, stored)
    return stored


def restore(path: Path, *, force: bool = False) -> Stored:
    """Apply the stored ring again (at boot, say); refused when the kernel holds another key
    (its clients' cookies would be lost) unless ``force``."""
    stored = load(path)
    if stored is None:
        raise FastOpenError(
            f"no key stored in {path}", hint="`fastopen key generate` makes and stores one"
        )
    if not force:
        _refuse_if_disagreeing(path, stored, kernel_ring())
    apply(stored.ring)
    return stored


def rotate(
    path: Path, new: Key | None = None, *, now: float | None = None
) -> tuple[Stored, Disagreement | None]:
    """A new primary; the key the kernel holds now becomes the backup, so its cookies stay
    valid. Returns the new ring and how the store disagreed with the kernel (if it did): the
    kernel's key wins, the stored one is dropped."""
    stored = load(path)
    kernel = kernel_ring()
    found = compare(path, stored, kernel)
    if kernel is not None:
        old = kernel
    elif stored is not None:
        old = stored.ring
    else:
        raise FastOpenError("no TFO key is set", hint="`fastopen key generate` makes one")
    rotated = Stored(old.rotated(new), time.time() if now is None else now)
    install(path, rotated)
    return rotated, found


def current(path: Path) -> Stored:
    """The stored ring, if the kernel holds it; the kernel's when there is no store."""
    stored = load(path)
    kernel = kernel_ring()
    if stored is not None:
        _refuse_if_disagreeing(path, stored, kernel)
        return stored
    if kernel is None:
        raise FastOpenError("no TFO key is set", hint="`fastopen key generate` makes one")
    return Stored(kernel)


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
