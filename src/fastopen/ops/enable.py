"""The ``net.ipv4.tcp_fastopen`` bitmask, by name or number: decode it, set and clear bits,
persist it, reset it to Linux's default, and wait until a time after boot to change it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fastopen.constants import (
    TFO_CLIENT_ENABLE,
    TFO_CLIENT_NO_COOKIE,
    TFO_SERVER_COOKIE_NOT_REQD,
    TFO_SERVER_ENABLE,
    TFO_SERVER_WO_SOCKOPT1,
)
from fastopen.errors import FastOpenError
from fastopen.kernel import sysctl
from fastopen.ops.files import staged_write

SYSCTL = "net.ipv4.tcp_fastopen"
#: What Linux boots with: client TFO only (TFO_CLIENT_ENABLE).
DEFAULT = TFO_CLIENT_ENABLE
BLACKHOLE = "net.ipv4.tcp_fastopen_blackhole_timeout_sec"
#: Linux's default blackhole timeout since 5.14 (detection off).
DEFAULT_BLACKHOLE = 0
#: Where ``--persist`` writes, so the setting comes back at boot (systemd-sysctl reads it).
PERSIST_FILE = Path("/etc/sysctl.d/60-fastopen.conf")


@dataclass(frozen=True, slots=True)
class Bit:
    name: str
    value: int
    linux_name: str
    meaning: str


BITS = (
    Bit("client", TFO_CLIENT_ENABLE, "TFO_CLIENT_ENABLE", "clients may send data in the SYN"),
    Bit("server", TFO_SERVER_ENABLE, "TFO_SERVER_ENABLE", "listeners with TCP_FASTOPEN accept TFO"),
    Bit(
        "client-no-cookie",
        TFO_CLIENT_NO_COOKIE,
        "TFO_CLIENT_NO_COOKIE",
        "clients send SYN data without a cookie (only for servers that accept it)",
    ),
    Bit(
        "server-no-cookie",
        TFO_SERVER_COOKIE_NOT_REQD,
        "TFO_SERVER_COOKIE_NOT_REQD",
        "listeners accept SYN data without a cookie (no protection against spoofed SYNs)",
    ),
    Bit(
        "server-all-listeners",
        TFO_SERVER_WO_SOCKOPT1,
        "TFO_SERVER_WO_SOCKOPT1",
        "every listener does TFO, without the TCP_FASTOPEN socket option",
    ),
)
ALL = sum(b.value for b in BITS)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


_BY_NAME = {_norm(n): b for b in BITS for n in (b.name, b.linux_name)}


def bit(name: str) -> Bit:
    """The bit called ``name`` (ours, e.g. ``server-no-cookie``, or Linux's, any case)."""
    found = _BY_NAME.get(_norm(name))
    if found is None:
        raise FastOpenError(
            f"unknown TFO bit {name!r}",
            hint="known bits: " + ", ".join(b.name for b in BITS) + ", or a number such as 0x3",
        )
    return found


def _number(text: str) -> int | None:
    """``3``, ``0x2``, ``0o1000``: a value of the bitmask, or None when ``text`` is not a number."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def mask(names: Iterable[str]) -> int:
    """The bitmask of ``names``: bit names, or numbers (``3``, ``0x202``) made of known bits;
    anything else is an error."""
    value = 0
    for name in names:
        number = _number(name)
        if number is None:
            value |= bit(name).value
            continue
        if number < 0 or number & ~ALL:
            raise FastOpenError(
                f"{name!r} holds bits Linux does not define ({number & ~ALL:#x})"
                if number >= 0
                else f"{name!r} is negative",
                hint="the TFO bits are " + ", ".join(f"{b.value:#x} {b.name}" for b in BITS),
            )
        value |= number
    return value


def without_cookies(value: int) -> int:
    """``value`` plus the no-cookie bit of each side it enables (client 0x4, server 0x200)."""
    if value & TFO_CLIENT_ENABLE:
        value |= TFO_CLIENT_NO_COOKIE
    if value & (TFO_SERVER_ENABLE | TFO_SERVER_WO_SOCKOPT1):
        value |= TFO_SERVER_COOKIE_NOT_REQD
    return value


def decode(value: int) -> list[str]:
    """The names of the bits set in ``value``; bits Linux does not define show as hex."""
    names = [b.name for b in BITS if value & b.value]
    if value & ~ALL:
        names.append(hex(value & ~ALL))
    return names


def read() -> int:
    """The current ``net.ipv4.tcp_fastopen`` of this network namespace."""
    return sysctl.read_int(SYSCTL)


@dataclass(frozen=True, slots=True)
class Change:
    before: int
    after: int
    persisted: Path | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "before": self.before,
            "after": self.after,
            "before_bits": decode(self.before),
            "after_bits": decode(self.after),
            "persisted": str(self.persisted) if self.persisted else None,
        }


def persist_text(value: int) -> str:
    return (
        "# Written by `fastopen enable/disable --persist`: TCP Fast Open bits\n"
        f"# ({', '.join(decode(value)) or 'off'})\n"
        f"{SYSCTL} = {value}\n"
    )


def set_bits(*, on: int = 0, off: int = 0, persist: Path | None = None) -> Change:
    """Set the bits ``on`` and clear the bits ``off``; bits Linux does not define are cleared
    too. With ``persist``, also write that file (see :func:`check_persist`).

    The file is put in place only once the kernel took the value, so a failure changes nothing.
    """
    return put(((read() | on) & ~off) & ALL, persist=persist)


def put(after: int, *, persist: Path | None = None) -> Change:
    """Set the bitmask to ``after`` (and write ``persist``, if given)."""
    before = read()
    if persist is None:
        if after != before:
            sysctl.write(SYSCTL, after)
        return Change(before, after)
    with staged_write(persist, persist_text(after).encode(), mode=0o644):
        sysctl.write(SYSCTL, after)
    return Change(before, after, persist)


#: Where systemd-sysctl and sysctl --system read files: they apply them to the host's namespace.
SYSCTL_DIRS = (
    Path("/etc/sysctl.d"),
    Path("/run/sysctl.d"),
    Path("/usr/local/lib/sysctl.d"),
    Path("/usr/lib/sysctl.d"),
    Path("/lib/sysctl.d"),
)


def check_persist(path: Path, *, host: bool) -> None:
    """Refuse to persist a namespace's setting where the host's boot would apply it.

    A network namespace does not survive a reboot, and the files systemd-sysctl reads (and
    ``/etc/sysctl.conf``) are applied to the host's namespace: persisting there from inside a
    namespace would change the host at the next boot.
    """
    if host:
        return
    resolved = path.resolve()
    if resolved == Path("/etc/sysctl.conf") or any(d in resolved.parents for d in SYSCTL_DIRS):
        raise FastOpenError(
            f"--persist in a network namespace would write {resolved}, which the host's boot "
            "applies to the host",
            hint="a namespace does not survive a reboot: set TFO where the namespace is made, or "
            "give --persist-file a file of your own (applied with `ip netns exec NS sysctl -p "
            "FILE`)",
        )


@dataclass(frozen=True, slots=True)
class Reset:
    """What ``fastopen reset`` changed: the bits, and the blackhole timeout (None if absent)."""

    bits: Change
    blackhole_before: int | None
    blackhole_after: int | None
    removed: Path | None


def reset(*, persist: Path | None = None) -> Reset:
    """Linux's defaults: ``tcp_fastopen`` 1 (client only), blackhole detection off (0); with
    ``persist``, also remove that file if fastopen wrote it. The key is left alone (the kernel
    cannot forget it): ``fastopen key generate --force`` replaces it."""
    removed = None
    if persist is not None and persist.exists():
        if not persist.read_text().startswith("# Written by `fastopen"):
            raise FastOpenError(
                f"{persist} was not written by fastopen", hint="remove it by hand if you mean to"
            )
        removed = persist
    try:
        blackhole: int | None = sysctl.read_int(BLACKHOLE)
    except FastOpenError:  # kernels before 4.11 lack it
        blackhole = None
    change = put(DEFAULT)
    if blackhole is not None and blackhole != DEFAULT_BLACKHOLE:
        sysctl.write(BLACKHOLE, DEFAULT_BLACKHOLE)
    if removed is not None:
        removed.unlink()
    after = None if blackhole is None else DEFAULT_BLACKHOLE
    return Reset(change, blackhole, after, removed)


# -- the seed's boot-time rule: TFO on some time after boot ------------------------------------


def uptime() -> float:
    """Seconds since this host booted (``/proc/uptime``)."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def wait_after_boot(
    delay: float, wait: Callable[[float], bool], clock: Callable[[], float] = uptime
) -> bool:
    """Wait until ``delay`` seconds after boot; False if ``wait`` (an Event's ``wait``, say)
    returned True because the wait was cut short (SIGTERM).

    A server that just rebooted forgot the SYNs it accepted with data (RFC 7413, section 6.1:
    a retransmitted SYN could be processed twice): the seed's rule is to turn server TFO on only
    minutes after boot, when such retransmissions are over.
    """
    left = delay - clock()
    while left > 0:
        if wait(left):
            return False
        left = delay - clock()
    return True
