"""Operating TFO: ``status``, ``enable``, ``disable``, ``key``, ``keyd``, ``stats``, ``cookies``.

Every command takes ``--json`` (one JSON document, or one a line for the watching ones) and
``--netns NAME`` (the command runs inside the network namespace ``NAME``, as ``ip netns exec``
would run it).
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from fastopen.cookies import Key, KeyRing
from fastopen.errors import FastOpenError
from fastopen.kernel import tcp_metrics
from fastopen.lab.netns import entered
from fastopen.ops import enable as bits
from fastopen.ops import farm, keys, stats
from fastopen.ops.alerts import AlertMonitor
from fastopen.ops.keyd import KeyDaemon
from fastopen.ops.status import gather


@dataclass(frozen=True)
class Out:
    """Where a command's result goes: JSON or text, decided by ``--json``."""

    json: bool

    def emit(self, data: Any, text: str) -> None:
        click.echo(json.dumps(data, sort_keys=True) if self.json else text)


_COMMON_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
_COMMON_NETNS = click.option(
    "--netns", metavar="NAME", help="Run inside the network namespace NAME."
)
_REVEAL = click.option("--reveal", is_flag=True, help="Print the keys in full (they are secrets).")
_ALERT_EVERY = click.option(
    "--alert-every", default="5m", show_default=True, help="At most one warning a counter per."
)


def ops_command(f: Callable[..., None]) -> Callable[..., None]:
    """Add ``--json`` and ``--netns`` to a command; run it in the namespace, pass it an ``Out``."""

    @_COMMON_JSON
    @_COMMON_NETNS
    @functools.wraps(f)
    def wrapper(*args: Any, netns: str | None, as_json: bool, **kwargs: Any) -> None:
        parent = click.get_current_context().parent
        if parent is not None:  # `fastopen cookies --netns X flush`: the group's options count
            netns = netns or parent.params.get("netns")
            as_json = as_json or bool(parent.params.get("as_json"))
        with entered(netns) if netns else nullcontext():
            f(*args, out=Out(as_json), **kwargs)

    return wrapper


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT, for loops that must end cleanly under systemd."""
    stop = threading.Event()
    handler = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, handler[0])
        signal.signal(signal.SIGINT, handler[1])


# -- status, enable, disable ---------------------------------------------------------------------


@click.command()
@ops_command
def status(out: Out) -> None:
    """TFO on this host: sysctl bits, key, limits, counters, kernel features, advice."""
    st = gather()
    key = {True: "set", False: "not set", None: "unknown (needs root)"}[st.key_set]
    blackhole = "n/a" if st.blackhole_timeout is None else f"{st.blackhole_timeout} s"
    fields = [
        ("kernel", st.kernel),
        ("net.ipv4.tcp_fastopen", f"{st.sysctl:#x} ({', '.join(st.bits) or 'off'})"),
        ("key", key),
        ("blackhole timeout", blackhole),
        ("net.core.somaxconn", str(st.somaxconn)),
    ]
    lines = [
        *(f"{label:22} {value}" for label, value in fields),
        "counters:",
        *(f"  {name:28} {value}" for name, value in st.counters.items()),
        "features:",
        *(f"  {f.name:20} {'yes' if f.present else 'no ':4} {f.detail}" for f in st.features),
    ]
    if st.advice:
        lines += ["advice:", *(f"  - {a}" for a in st.advice)]
    out.emit(st.to_json(), "\n".join(lines))


def _change_text(change: bits.Change) -> str:
    text = (
        f"{bits.SYSCTL}: {change.before:#x} -> {change.after:#x} "
        f"({', '.join(bits.decode(change.after)) or 'off'})"
    )
    if change.persisted:
        text += f"\npersisted in {change.persisted}"
    return text


_PERSIST = click.option(
    "--persist",
    "persist",
    is_flag=True,
    help=f"Also write {bits.PERSIST_FILE} so the setting survives a reboot.",
)
_PERSIST_FILE = click.option(
    "--persist-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=bits.PERSIST_FILE,
    show_default=True,
    help="The sysctl.d file --persist writes.",
)


@click.command("enable")
@click.argument("names", nargs=-1, metavar="[BIT]...")
@click.option("--client", is_flag=True, help="Clients may send data in the SYN (0x1).")
@click.option("--server", is_flag=True, help="Listeners with TCP_FASTOPEN accept TFO (0x2).")
@click.option(
    "--no-cookie", is_flag=True, help="The sides enabled go without cookies (0x4, 0x200): risky."
)
@click.option("--all-listeners", is_flag=True, help="Every listener does TFO (0x400).")
@_PERSIST
@_PERSIST_FILE
@ops_command
def enable_cmd(
    out: Out,
    names: tuple[str, ...],
    client: bool,
    server: bool,
    no_cookie: bool,
    all_listeners: bool,
    persist: bool,
    persist_file: Path,
) -> None:
    """Set TFO bits of net.ipv4.tcp_fastopen by name (client and server when none is given).

    BIT is one of client, server, client-no-cookie, server-no-cookie, server-all-listeners (or
    the Linux names, e.g. TFO_SERVER_COOKIE_NOT_REQD).
    """
    if not (names or client or server or all_listeners):
        client = server = True
    flags = {"client": client, "server": server, "server-all-listeners": all_listeners}
    on = bits.mask([*names, *(name for name, given in flags.items() if given)])
    if no_cookie:
        on = bits.without_cookies(on)
    change = bits.set_bits(on=on, persist=persist_file if persist else None)
    out.emit(change.to_json(), _change_text(change))


@click.command("disable")
@click.argument("names", nargs=-1, metavar="[BIT]...")
@_PERSIST
@_PERSIST_FILE
@ops_command
def disable_cmd(out: Out, names: tuple[str, ...], persist: bool, persist_file: Path) -> None:
    """Clear TFO bits by name; with no BIT, clear them all (TFO off)."""
    off = bits.mask(names) if names else bits.ALL
    change = bits.set_bits(off=off, persist=persist_file if persist else None)
    out.emit(change.to_json(), _change_text(change))


# -- key -----------------------------------------------------------------------------------------


@click.group()
def key() -> None:
    """The TFO key: generate, show, set, rotate, retire, and derive farm keys."""


_STORE = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key store (default /var/lib/fastopen/tfo-key.json, per namespace with --netns).",
)


def _store(store: Path | None) -> Path:
    if store is not None:
        return store
    ctx = click.get_current_context()
    return keys.default_store(ctx.params.get("netns"))


def _ring_text(ring: KeyRing | None, reveal: bool) -> str:
    if ring is None:
        return "none"
    show = Key.to_text if reveal else Key.masked
    return "primary " + show(ring.primary) + "".join(f", backup {show(k)}" for k in ring.backups)


def _emit_ring(out: Out, what: str, stored: keys.Stored, store: Path) -> None:
    data = {"action": what, "store": str(store), **keys.describe(stored.ring, reveal=False)}
    out.emit(data, f"{what}: {_ring_text(stored.ring, False)} (stored in {store}, applied)")


@key.command()
@click.option("--force", is_flag=True, help="Overwrite a stored key.")
@_STORE
@ops_command
def generate(out: Out, force: bool, store: Path | None) -> None:
    """Make a random key (from `secrets`), store it (mode 0600) and apply it."""
    path = _store(store)
    _emit_ring(out, "generated", keys.generate(path, force=force), path)


@key.command()
@_REVEAL
@_STORE
@ops_command
def show(out: Out, reveal: bool, store: Path | None) -> None:
    """The kernel's key and the stored one, masked unless --reveal."""
    path = _store(store)
    kernel = keys.kernel_ring()
    stored = keys.load(path)
    in_sync = stored is not None and stored.ring == kernel
    data = {
        "kernel": keys.describe(kernel, reveal=reveal),
        "store": str(path),
        "stored": keys.describe(stored.ring if stored else None, reveal=reveal),
        "rotated_at": stored.rotated_at if stored else None,
        "in_sync": in_sync,
    }
    text = (
        f"kernel: {_ring_text(kernel, reveal)}\n"
        f"stored: {_ring_text(stored.ring if stored else None, reveal)} ({path})"
    )
    if stored is not None and not in_sync:
        text += "\nthe kernel's key differs from the stored one: `fastopen key set` applies it"
    out.emit(data, text)


@key.command("set")
@click.argument("value", required=False, metavar="[KEY]")
@_STORE
@ops_command
def set_cmd(out: Out, value: str | None, store: Path | None) -> None:
    """Store and apply KEY (PRIMARY[,BACKUP] as the sysctl takes it; - reads it from stdin).

    Without KEY, apply the stored key again (at boot, say).
    """
    path = _store(store)
    if value is None:
        _emit_ring(out, "restored", keys.restore(path), path)
        return
    text = sys.stdin.readline() if value == "-" else value
    _emit_ring(out, "set", keys.set_ring(path, KeyRing.from_text(text)), path)


@key.command()
@_STORE
@ops_command
def rotate(out: Out, store: Path | None) -> None:
    """A new primary key; the old one stays as backup so clients' cookies keep working."""
    path = _store(store)
    _emit_ring(out, "rotated", keys.rotate(path), path)


@key.command()
@click.option(
    "--grace",
    default="1d",
    show_default=True,
    help="How long after a rotation the backup must stay (90s, 30m, 12h, 1d).",
)
@click.option("--force", is_flag=True, help="Retire even within the grace time.")
@_STORE
@ops_command
def retire(out: Out, grace: str, force: bool, store: Path | None) -> None:
    """Drop the backup key, once the grace time since the rotation is over."""
    path = _store(store)
    _emit_ring(
        out,
        "retired",
        keys.retire(path, grace=farm.parse_duration(grace, minimum=0), force=force),
        path,
    )


_SECRET = click.option(
    "--secret-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The farm's shared secret (at least 16 bytes, mode 0600).",
)
_INTERVAL = click.option(
    "--interval", default="1d", show_default=True, help="How often the farm key changes."
)


@key.command()
@_SECRET
@_INTERVAL
@click.option("--at", "at", type=float, help="Unix time to derive for (default: now).")
@_REVEAL
@ops_command
def derive(out: Out, secret_file: Path, interval: str, at: float | None, reveal: bool) -> None:
    """The farm's primary and backup keys for now, from a shared secret and the time."""
    fk = farm.farm_keys(
        farm.read_secret(secret_file),
        farm.parse_duration(interval),
        time.time() if at is None else at,
    )
    data = {
        "interval": fk.index,
        "start": fk.start,
        "end": fk.end,
        **keys.describe(fk.ring, reveal=reveal),
        "sysctl": fk.ring.to_text() if reveal else None,
    }
    text = (
        f"interval {fk.index} ({fk.start:.0f} to {fk.end:.0f})\n"
        f"primary {data['primary']}\nbackup  {data['backup']}"
    )
    out.emit(data, text)


# -- keyd ----------------------------------------------------------------------------------------


@click.command()
@_SECRET
@_INTERVAL
@click.option(
    "--check", "check_every", default="60s", show_default=True, help="How often to look around."
)
@_ALERT_EVERY
@click.option("--once", is_flag=True, help="Apply the current farm key and exit.")
@ops_command
def keyd(
    out: Out, secret_file: Path, interval: str, check_every: str, alert_every: str, once: bool
) -> None:
    """Apply the farm keys on schedule (a service: see docs/operations.md) and log alerts."""
    root = logging.getLogger("fastopen")
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    daemon = KeyDaemon(
        farm.read_secret(secret_file),
        farm.parse_duration(interval),
        check_every=farm.parse_duration(check_every),
        monitor=AlertMonitor(farm.parse_duration(alert_every)),
    )
    if once:
        fk = daemon.apply()
        out.emit({"interval": fk.index, "end": fk.end}, f"farm key of interval {fk.index} in place")
        return
    with _stop_on_signals() as stop:
        daemon.run(stop)


# -- stats ---------------------------------------------------------------------------------------


def _rows_text(rows: list[stats.Row]) -> str:
    lines = []
    for r in rows:
        line = f"{r.name:28} {r.value:>12}"
        if r.delta is not None:
            rate = "" if r.rate is None else f" {r.rate:>10.2f}/s"
            line += f" {r.delta:>+10}{rate}"
        lines.append(line)
    return "\n".join(lines)


@click.command("stats")
@click.option("--watch", type=float, metavar="SECONDS", help="Print deltas every SECONDS.")
@click.option("--count", type=int, help="With --watch: stop after this many reports.")
@click.option("--serve", metavar="HOST:PORT", help="Serve /metrics for Prometheus.")
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a node_exporter textfile (*.prom); rewritten each --watch period.",
)
@_ALERT_EVERY
@ops_command
def stats_cmd(
    out: Out,
    watch: float | None,
    count: int | None,
    serve: str | None,
    textfile: Path | None,
    alert_every: str,
) -> None:
    """The TcpExt TFO counters; with --watch their deltas, rates and alerts."""
    if watch is not None and watch <= 0:
        raise FastOpenError("--watch needs a positive number of seconds")
    monitor = AlertMonitor(farm.parse_duration(alert_every))
    server = None
    if serve is not None:
        server, _ = stats.serve(*stats.parse_listen(serve))
        click.echo(f"serving /metrics on {serve}", err=True)
    try:
        before = stats.snapshot()
        if textfile is not None:
            stats.write_textfile(textfile)
        if watch is None and server is None:
            rows = stats.rows(before)
            out.emit({r.name: r.value for r in rows}, _rows_text(rows))
            return
        reports = 0
        with _stop_on_signals() as stop:
            # without --watch, just serve until stopped
            while (count is None or reports < count) and not stop.wait(watch):
                now = stats.snapshot()
                rows = stats.rows(now, before)
                monitor.check(before.counters, now.counters, time.time())
                if textfile is not None:
                    stats.write_textfile(textfile)
                out.emit({r.name: r.to_json() for r in rows}, _rows_text(rows) + "\n")
                before, reports = now, reports + 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


# -- cookies -------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


@click.group(invoke_without_command=True)
@_COMMON_JSON
@_COMMON_NETNS
@click.pass_context
def cookies(ctx: click.Context, netns: str | None, as_json: bool) -> None:
    """The kernel's client cookie cache (tcp_metrics): list (the default) or flush."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_cmd, netns=netns, as_json=as_json)


@cookies.command("list")
@ops_command
def list_cmd(out: Out) -> None:
    """Each cached destination: source, cookie, server MSS, SYN drops, age."""
    found = tcp_metrics.entries()
    header = (
        f"{'destination':24} {'source':24} {'cookie':16} {'mss':>5} {'drops':>5} "
        f"{'drop age':>9} {'age':>9}"
    )
    lines = [header] + [
        f"{e.destination!s:24} {e.source or '-'!s:24} {e.cookie.hex() or '-':16} "
        f"{e.mss or '-'!s:>5} {e.syn_drops:>5} {_age(e.syn_drop_age):>9} {_age(e.age):>9}"
        for e in found
    ]
    out.emit([e.to_json() for e in found], "\n".join(lines))


@cookies.command()
@click.argument("address", required=False)
@ops_command
def flush(out: Out, address: str | None) -> None:
    """Drop the cached entries for ADDRESS, or all of them."""
    target = tcp_metrics.parse_address(address) if address else None
    removed = tcp_metrics.flush(target)
    out.emit(
        {"flushed": removed, "address": address},
        f"flushed {removed} entr{'y' if removed == 1 else 'ies'}"
        + (f" for {address}" if address else ""),
    )


COMMANDS = [status, enable_cmd, disable_cmd, key, keyd, stats_cmd, cookies]
