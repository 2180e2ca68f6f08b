"""``fastopen packetdrill``: packetdrill scripts against the engine (virtual time) or the kernel."""

from __future__ import annotations

import sys

import click

from fastopen.packetdrill import Config, ScriptError, run_file
from fastopen.packetdrill.runner import STACKS


@click.command()
@click.argument("scripts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--stack",
    type=click.Choice(STACKS),
    default="engine",
    show_default=True,
    help="The stack under test: the userspace engine in virtual time, or the Linux kernel in a "
    "network namespace, in real time (root).",
)
@click.option(
    "--tolerance-usecs",
    type=click.IntRange(0, 10_000_000),
    default=None,
    help="Timing tolerance for packets and blocking calls (default 4000 for the engine, as "
    "packetdrill; 25000 for the kernel).",
)
@click.option(
    "--ip-version",
    type=click.Choice(["ipv4", "ipv6"]),
    default=None,
    help="Address family of the run (default ipv4).",
)
@click.option(
    "-D",
    "--define",
    "defines",
    multiple=True,
    metavar="NAME=VALUE",
    help="Read NAME as VALUE in the scripts, like packetdrill's -D (TFO_COOKIE=3021b9d889017eeb).",
)
@click.option(
    "--mtu",
    type=click.IntRange(576, 65535),
    default=None,
    help="MTU of the engine's link, which gives its MSS (default 1500).",
)
def packetdrill(
    scripts: tuple[str, ...],
    stack: str,
    tolerance_usecs: int | None,
    ip_version: str | None,
    defines: tuple[str, ...],
    mtu: int | None,
) -> None:
    """Run packetdrill SCRIPTS against the engine in virtual time, or against the Linux kernel.

    With the engine (the default) each script gets a fresh engine host, and nothing sleeps. With
    ``--stack kernel`` each script gets a fresh network namespace with a TUN device, and runs in
    real time against real sockets, as packetdrill does; its addresses (``--local_ip`` and
    ``--remote_ip`` lines) must be inside 198.18.0.0/15 or fd00::/8. Scripts that give no
    addresses run on the engine at packetdrill's (local 192.168.0.1, remote 192.0.2.1; IPv6
    fd3d:a0b:17d6::1 and fd3d:fa7b:d17d::1). The first difference stops a script and prints
    the script line with the expected and the actual packet. The exit code is 1 when any script
    failed. Options given here override the script's own ``--name=value`` lines.
    """
    names: dict[str, str] = {}
    for item in defines:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="-D")
        names[name] = value
    given = {"ip_version": ip_version, "tolerance_usecs": tolerance_usecs, "mtu": mtu}
    command_line = {name: str(value) for name, value in given.items() if value is not None}
    failed = 0
    for path in scripts:
        config = Config(stack=stack, defines=names, command_line=command_line)
        try:
            result = run_file(path, config)
        except ScriptError as exc:
            failed += 1
            click.echo(str(exc), err=True)
            continue
        click.echo(
            f"ok {path}: {result.events} events ({result.packets_in} packets in,"
            f" {result.packets_out} out, {result.syscalls} calls),"
            f" {result.duration:.3f} s of {'virtual' if stack == 'engine' else 'real'} time"
        )
    passed = len(scripts) - failed
    click.echo(f"{passed} passed, {failed} failed")
    if failed:
        sys.exit(1)


COMMANDS = [packetdrill]
