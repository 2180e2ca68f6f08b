"""The ``net.ipv4.tcp_fastopen`` bitmask, by name: decode it, set and clear bits, persist it."""

from __future__ import annotations

from collections.abc import Iterable
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
            hint="known bits: " + ", ".join(b.name for b in BITS),
        )
    return found


def mask(names: Iterable[str]) -> int:
    """The bitmask of the bits ``names``; an unknown name is an error."""
    value = 0
    for name in names:
        value |= bit(name).value
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
            "sysctl": SYSCTL,
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
    """Set the bits ``on`` and clear the bits ``off``; with ``persist``, also write that file.

    The file is put in place only once the kernel took the value, so a failure changes nothing.
    """
    before = read()
    after = (before | on) & ~off
    if persist is None:
        if after != before:
            sysctl.write(SYSCTL, after)
        return Change(before, after)
    with staged_write(persist, persist_text(after).encode(), mode=0o644):
        sysctl.write(SYSCTL, after)
    return Change(before, after, persist)
