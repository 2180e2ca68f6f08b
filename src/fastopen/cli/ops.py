"""Operating TFO: ``status``, ``enable``, ``disable``, ``reset``, ``key``, ``keyd``, ``stats``,
``cookies``.

Every command takes ``--json`` (one JSON document, or one a line for the watching ones; see
docs/json.md) and ``--netns NETNS`` (the command runs inside that network namespace, as
``ip netns exec`` would run it).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from fastopen.cli.options import (
    Duration,
    Group,
    Out,
    UnixTime,
    here,
    json_option,
    netns_option,
    now,
    ops_command,
    print_table,
)
from fastopen.cookies import Key, KeyRing
from fastopen.errors import FastOpenError
from fastopen.kernel import tcp_metrics
from fastopen.kernel.netns import identify
from fastopen.ops import cache, farm, keys, stats
from fastopen.ops import enable as bits
from fastopen.ops.alerts import AlertMonitor
from fastopen.ops.keyd import KeyDaemon
from fastopen.ops.status import gather

_REVEAL = click.option("--reveal", is_flag=True, help="Print the keys in full (they are secrets).")
_ALERT_EVERY = click.option(
    "--alert-every",
    type=Duration("s", minimum=1.0),
    default="5m",
    show_default=True,
    help="At most one warning a counter in this time (a bare number is seconds).",
)


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
    blackhole = "n/a" if st.blackhole_timeout_s is None else f"{st.blackhole_timeout_s} s"
    fields = [
        ("network namespace", st.netns),
        ("kernel", st.kernel),
        ("net.ipv4.tcp_fastopen", f"{st.tcp_fastopen:#x} ({', '.join(st.bits) or 'off'})"),
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
    help=f"Also write {bits.PERSIST_FILE} (or --persist-file) so the setting survives a reboot; "
    "refused inside a network namespace for the host's sysctl.d.",
)
_PERSIST_FILE = click.option(
    "--persist-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=bits.PERSIST_FILE,
    show_default=True,
    help="The sysctl.d file --persist writes.",
)


def _persist_path(persist: bool, persist_file: Path) -> Path | None:
    if not persist:
        return None
    bits.check_persist(persist_file, host=identify().host)
    return persist_file


def _emit_change(out: Out, change: bits.Change, **extra: Any) -> None:
    out.emit({**here(), **change.to_json(), **extra}, _change_text(change))


@click.command("enable")
@click.argument("names", nargs=-1, metavar="[BIT]...")
@click.option("--client", is_flag=True, help="Clients may send data in the SYN (0x1).")
@click.option("--server", is_flag=True, help="Listeners with TCP_FASTOPEN accept TFO (0x2).")
@click.option(
    "--no-cookie", is_flag=True, help="The sides enabled go without cookies (0x4, 0x200): risky."
)
@click.option("--all-listeners", is_flag=True, help="Every listener does TFO (0x400).")
@click.option(
    "--after-boot",
    type=Duration("s", maximum=86400.0),
    metavar="DURATION",
    help="Wait until this long after boot first (5m; a bare number is seconds): a rebooted "
    "server forgot the SYN data it took, so the seed's rule turns server TFO on minutes later.",
)
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
    after_boot: float | None,
    persist: bool,
    persist_file: Path,
) -> None:
    """Set TFO bits of net.ipv4.tcp_fastopen by name or number (client and server by default).

    BIT is one of client, server, client-no-cookie, server-no-cookie, server-all-listeners, a
    Linux name (TFO_SERVER_COOKIE_NOT_REQD), or a number (3, 0x202).
    """
    if not (names or client or server or all_listeners):
        client = server = True
    flags = {"client": client, "server": server, "server-all-listeners": all_listeners}
    on = bits.mask([*names, *(name for name, given in flags.items() if given)])
    if no_cookie:
        on = bits.without_cookies(on)
    path = _persist_path(persist, persist_file)
    bits.read()  # fail now, not after the wait, when the sysctl is missing
    if after_boot is not None:
        left = after_boot - bits.uptime()
        if left > 0:
            click.echo(f"fastopen: waiting {left:.0f} s ({after_boot:g} s after boot)", err=True)
        with _stop_on_signals() as stop:
            if not bits.wait_after_boot(after_boot, stop.wait):
                raise FastOpenError("stopped while waiting: nothing was changed")
    _emit_change(out, bits.set_bits(on=on, persist=path), after_boot_s=after_boot)


@click.command("disable")
@click.argument("names", nargs=-1, metavar="[BIT]...")
@_PERSIST
@_PERSIST_FILE
@ops_command
def disable_cmd(out: Out, names: tuple[str, ...], persist: bool, persist_file: Path) -> None:
    """Clear TFO bits by name or number; with no BIT, back to Linux's default (0x1: client only).

    Bits Linux does not define are cleared too. `fastopen disable client` turns TFO off (0).
    """
    path = _persist_path(persist, persist_file)
    if names:
        change = bits.set_bits(off=bits.mask(names), persist=path)
    else:
        change = bits.put(bits.DEFAULT, persist=path)
    _emit_change(out, change)


@click.command("reset")
@click.option(
    "--persist",
    "persist",
    is_flag=True,
    help="Also remove the --persist-file fastopen wrote (nothing else).",
)
@_PERSIST_FILE
@ops_command
def reset_cmd(out: Out, persist: bool, persist_file: Path) -> None:
    """Linux's defaults: net.ipv4.tcp_fastopen 1 and blackhole detection off (0).

    The key stays: the kernel cannot forget it (`fastopen key generate --force` replaces it).
    """
    path = _persist_path(persist, persist_file)
    done = bits.reset(persist=path)
    text = _change_text(done.bits)
    if done.blackhole_before is not None and done.blackhole_before != done.blackhole_after:
        text += f"\n{bits.BLACKHOLE}: {done.blackhole_before} -> {done.blackhole_after}"
    if done.removed is not None:
        text += f"\nremoved {done.removed}"
    out.emit(
        {
            **here(),
            **done.bits.to_json(),
            "blackhole_timeout_before_s": done.blackhole_before,
            "blackhole_timeout_after_s": done.blackhole_after,
            "removed": None if done.removed is None else str(done.removed),
        },
        text,
    )


# -- key -----------------------------------------------------------------------------------------


@click.group(cls=Group)
def key() -> None:
    """The TFO key: generate, show, set, rotate, retire, and derive farm keys."""


_STORE = click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key store (default: the namespace's, /var/lib/fastopen/tfo-key.json on the host, "
    "/var/lib/fastopen/netns/NAME/tfo-key.json in a namespace).",
)


def _store(store: Path | None) -> Path:
    """The store given, or the one of the namespace this thread is in (however it got there)."""
    return store if store is not None else keys.default_store()


def _ring_text(ring: KeyRing | None, reveal: bool) -> str:
    if ring is None:
        return "none"
    show = Key.to_text if reveal else Key.masked
    return "primary " + show(ring.primary) + "".join(f", backup {show(k)}" for k in ring.backups)


def _emit_ring(
    out: Out,
    what: str,
    stored: keys.Stored,
    store: Path,
    disagreement: keys.Disagreement | None = None,
) -> None:
    data = {
        **here(),
        "action": what,
        "store": str(store),
        **keys.describe(stored.ring, reveal=False),
        "disagreement": None if disagreement is None else disagreement.to_json(),
    }
    text = f"{what}: {_ring_text(stored.ring, False)} (stored in {store}, applied)"
    if disagreement is not None:
        text += (
            f"\nnote: {disagreement.text()}; the kernel's key was kept as the backup and the "
            "stored one dropped"
        )
    out.emit(data, text)


@key.command()
@click.option("--force", is_flag=True, help="Overwrite a stored key.")
@_STORE
@ops_command
def generate(out: Out, force: bool, store: Path | None) -> None:
    """Make a random key (from `secrets`), store it (mode 0600) and apply it.

    A key the kernel holds already stays as the backup, so no client's cookie is lost.
    """
    path = _store(store)
    _emit_ring(out, "generated", keys.generate(path, force=force), path)


@key.command()
@_REVEAL
@_STORE
@ops_command
def show(out: Out, reveal: bool, store: Path | None) -> None:
    """The kernel's key and the stored one, masked unless --reveal; which is newer if they
    differ."""
    path = _store(store)
    kernel = keys.kernel_ring()
    stored = keys.load(path)
    found = keys.compare(path, stored, kernel)
    data = {
        **here(),
        "kernel": keys.describe(kernel, reveal=reveal),
        "store": str(path),
        "stored": keys.describe(stored.ring if stored else None, reveal=reveal),
        "rotated_at": stored.rotated_at if stored else None,
        "source": stored.source if stored else None,
        "in_sync": stored is not None and found is None,
        "disagreement": None if found is None else found.to_json(),
    }
    text = (
        f"kernel: {_ring_text(kernel, reveal)}\n"
        f"stored: {_ring_text(stored.ring if stored else None, reveal)} ({path})"
    )
    if stored is not None and stored.source == "keyd":
        text += f"\nthe stored key is the farm key of interval {stored.interval} (fastopen keyd)"
    if found is not None:
        text += f"\n{found.text()}"
    out.emit(data, text)


@key.command("set")
@click.argument("value", required=False, metavar="[KEY]")
@click.option("--from-kernel", is_flag=True, help="Store the key the kernel holds now, as it is.")
@click.option(
    "--force", is_flag=True, help="Without KEY: apply the stored key even over another one."
)
@_STORE
@ops_command
def set_cmd(
    out: Out, value: str | None, from_kernel: bool, force: bool, store: Path | None
) -> None:
    """Store and apply KEY (PRIMARY[,BACKUP] as the sysctl takes it; - reads it from stdin).

    Without KEY, apply the stored key again (at boot, say); refused when the kernel holds
    another key, whose cookies clients have, unless --force.
    """
    path = _store(store)
    if from_kernel:
        if value is not None:
            raise click.UsageError("give KEY or --from-kernel, not both")
        _emit_ring(out, "adopted", keys.adopt(path), path)
        return
    if value is None:
        _emit_ring(out, "restored", keys.restore(path, force=force), path)
        return
    text = sys.stdin.readline() if value == "-" else value
    _emit_ring(out, "set", keys.set_ring(path, KeyRing.from_text(text)), path)


@key.command()
@_STORE
@ops_command
def rotate(out: Out, store: Path | None) -> None:
    """A new primary key; the key the kernel holds now stays as backup, so no cookie is lost."""
    path = _store(store)
    stored, disagreement = keys.rotate(path)
    _emit_ring(out, "rotated", stored, path, disagreement)


@key.command()
@click.option(
    "--grace",
    type=Duration("s"),
    default="1d",
    show_default=True,
    help="How long after a rotation the backup must stay (90s, 30m, 1.5h, 1d; bare: seconds).",
)
@click.option("--force", is_flag=True, help="Retire even within the grace time.")
@_STORE
@ops_command
def retire(out: Out, grace: float, force: bool, store: Path | None) -> None:
    """Drop the backup key, once the grace time since the rotation is over."""
    path = _store(store)
    _emit_ring(out, "retired", keys.retire(path, grace=grace, force=force), path)


_SECRET = click.option(
    "--secret-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The farm's shared secret (at least 16 bytes, mode 0600).",
)
_INTERVAL = click.option(
    "--interval",
    type=Duration("s", minimum=60.0, whole=True),
    default="1d",
    show_default=True,
    help="How often the farm key changes: a cookie lives one to two of them (at least 1m, whole "
    "seconds; e.g. 1d, 12h; bare: seconds).",
)


@key.command()
@_SECRET
@_INTERVAL
@click.option(
    "--at", "at", type=UnixTime(), help="Unix time to derive for, in seconds (default: now)."
)
@_REVEAL
@ops_command
def derive(out: Out, secret_file: Path, interval: float, at: float | None, reveal: bool) -> None:
    """The farm's primary and backup keys for now, from a shared secret and the time."""
    fk = farm.farm_keys(farm.read_secret(secret_file), int(interval), now() if at is None else at)
    described = keys.describe(fk.ring, reveal=reveal)
    data = {
        "time": now(),
        "interval_s": int(interval),
        "interval_index": fk.index,
        "start": fk.start,
        "end": fk.end,
        **described,
        "key_text": fk.ring.to_text() if reveal else None,
    }
    text = (
        f"interval {fk.index} ({fk.start:.0f} to {fk.end:.0f})\n"
        f"primary {described['primary']}\nbackup  {described['backup']}"
    )
    out.emit(data, text)


# -- keyd ----------------------------------------------------------------------------------------


@click.command()
@_SECRET
@_INTERVAL
@click.option(
    "--check",
    "check_every",
    type=Duration("s", minimum=0.1, maximum=86400.0),
    default="60s",
    show_default=True,
    help="How often to look at the key and the counters (bare: seconds).",
)
@_ALERT_EVERY
@click.option("--once", is_flag=True, help="Apply the current farm key and exit.")
@_STORE
@ops_command
def keyd(
    out: Out,
    secret_file: Path,
    interval: float,
    check_every: float,
    alert_every: float,
    once: bool,
    store: Path | None,
) -> None:
    """Apply the farm keys on schedule (a service: see docs/operations.md) and log alerts.

    It records each farm key in the namespace's key store, so `fastopen key show` agrees.
    """
    root = logging.getLogger("fastopen")
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    daemon = KeyDaemon(
        farm.read_secret(secret_file),
        int(interval),
        check_every=check_every,
        monitor=AlertMonitor(alert_every),
        store=_store(store),
    )
    if once:
        fk = daemon.apply()
        out.emit(
            {**here(), "interval_index": fk.index, "end": fk.end},
            f"farm key of interval {fk.index} in place",
        )
        return
    with _stop_on_signals() as stop:
        daemon.run(stop)


# -- stats ---------------------------------------------------------------------------------------


def _rows_table(sample: stats.Snapshot, before: stats.Snapshot | None) -> Table:
    table = Table(title=f"TcpExt counters ({sample.stack} stack)", title_justify="left")
    table.add_column("counter", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    if before is not None:
        table.add_column("rise", justify="right", no_wrap=True)
        table.add_column("per second", justify="right", no_wrap=True)
    for r in stats.rows(sample, before):
        cells = [r.name, str(r.value)]
        if before is not None:
            cells += [f"{r.delta:+d}", "-" if r.rate is None else f"{r.rate:.2f}"]
        table.add_row(*cells)
    return table


@click.command("stats")
@click.option(
    "--stack",
    type=click.Choice(stats.STACKS),
    default="kernel",
    show_default=True,
    help="Whose counters: the kernel's, or those of the `fastopen serve --stack userspace` "
    "running in this namespace.",
)
@click.option(
    "--watch",
    type=Duration("s", minimum=0.0, min_open=True, maximum=86400.0),
    metavar="DURATION",
    help="Print the rises every DURATION (10s, 500ms; bare: seconds), with alerts.",
)
@click.option(
    "--count",
    type=click.IntRange(1, 1_000_000_000),
    help="With --watch: stop after this many reports.",
)
@click.option(
    "--serve",
    metavar="HOST:PORT",
    help="Serve /metrics for Prometheus (both stacks) until stopped.",
)
@click.option(
    "--textfile",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a node_exporter textfile (*.prom); rewritten each --watch period.",
)
@_ALERT_EVERY
@ops_command
def stats_cmd(
    out: Out,
    stack: str,
    watch: float | None,
    count: int | None,
    serve: str | None,
    textfile: Path | None,
    alert_every: float,
) -> None:
    """The TcpExt TFO counters of a stack; with --watch their rises, rates and alerts."""
    monitor = AlertMonitor(alert_every)
    server = None
    before = stats.snapshot(stack)
    if serve is not None:
        server, _ = stats.serve(*stats.parse_listen(serve))
        click.echo(f"serving /metrics on {serve}", err=True)
    try:
        if textfile is not None:
            stats.write_textfile(textfile)
        if watch is None and server is None:
            if out.json:
                out.emit(stats.sample_json(before), "")
            else:
                print_table(_rows_table(before, None))
            return
        reports = 0
        watched = stats.snapshots()
        with _stop_on_signals() as stop:
            # without --watch, just serve until stopped
            while (count is None or reports < count) and not stop.wait(watch):
                sample = stats.snapshot(stack)
                seen = stats.snapshots()
                stats.check_alerts(monitor, watched, seen)
                if textfile is not None:
                    stats.write_textfile(textfile)
                if out.json:
                    out.emit(stats.sample_json(sample, before), "")
                else:
                    print_table(_rows_table(sample, before))
                before, watched, reports = sample, seen, reports + 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


# -- cookies -------------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


@click.group(cls=Group, invoke_without_command=True)
@json_option
@netns_option()
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
    if out.json:
        out.emit({**here(), "entries": [e.to_json() for e in found]}, "")
        return
    table = Table(box=None, pad_edge=False)
    for name in ("destination", "source", "cookie"):
        table.add_column(name, no_wrap=True)
    for name in ("mss", "drops", "drop age", "age"):
        table.add_column(name, justify="right", no_wrap=True)
    for e in found:
        table.add_row(
            str(e.destination),
            str(e.source or "-"),
            e.cookie.hex() or "-",
            str(e.mss or "-"),
            str(e.syn_drops),
            _age(e.syn_drop_age),
            _age(e.age),
        )
    print_table(table)


def _flushed_text(removed: int, where: str) -> str:
    return f"flushed {removed} entr{'y' if removed == 1 else 'ies'}" + where


@cookies.command()
@click.argument("prefix", required=False)
@click.option(
    "--on-address-change",
    is_flag=True,
    help="Keep running and flush the whole cache each time an address of this namespace is "
    "added or removed (cookies identify a host across networks); SIGTERM stops it.",
)
@ops_command
def flush(out: Out, prefix: str | None, on_address_change: bool) -> None:
    """Drop the cached entries for PREFIX (an address, or 198.18.0.0/15, fd00::/8), or all."""
    if on_address_change:
        if prefix is not None:
            raise click.UsageError("--on-address-change flushes everything: give no PREFIX")
        _flush_on_address_change(out)
        return
    network = cache.parse_prefix(prefix) if prefix else None
    removed = cache.flush(network)
    out.emit(
        {**here(), "flushed": removed, "prefix": None if network is None else str(network)},
        _flushed_text(removed, f" for {prefix}" if prefix else ""),
    )


def _flush_on_address_change(out: Out) -> None:
    label = stats.netns_label()

    def changed(change: cache.AddressChange) -> None:
        out.emit(
            {
                "time": now(),
                "netns": label,
                "event": change.event,
                "address": change.address,
                "interface": change.interface,
                "flushed": change.flushed,
            },
            _flushed_text(change.flushed, f": address {change.address} {change.event}"),
        )
        sys.stdout.flush()

    def ready() -> None:
        click.echo(f"fastopen: watching the addresses of network namespace {label}", err=True)

    with _stop_on_signals() as stop:
        cache.watch_addresses(stop, changed, ready)


COMMANDS = [status, enable_cmd, disable_cmd, reset_cmd, key, keyd, stats_cmd, cookies]
