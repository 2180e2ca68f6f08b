"""The survival matrix: every middlebox of the lab against three TFO clients, farms and NAT.

For each middlebox (and none), a fresh lab with the box in its router, a kernel TFO echo server,
and for each client ten connections one after the other, each a 100-byte request and its answer:

- ``linux``: the Linux kernel's client as applications use it (``TCP_FASTOPEN_CONNECT``);
- ``fastopen-kernel``: ``fastopen.create_connection`` on the kernel's stack (with the path cache);
- ``userspace``: ``fastopen.open_connection`` on the userspace engine (with the path cache).

Prints whether the requests got through, the time to first byte of the 1st, 2nd and 10th
connection, and on which connections TFO was used (data in the SYN, acknowledged). A client
that fails three connections in a row is not tried further on that box. Then the farms: TFO
use with and without a shared key across two servers taking turns, the probe's verdict on
each, and the seed's third duplicate case (SYN-ACK lost, the retransmitted SYN on the other
server) counted; and the share of connections that use TFO behind a carrier-grade NAT as its
pool of public addresses grows. ``--png`` draws the matrix and the NAT curve.

Needs root. ``.venv/bin/python bench/middleboxes.py [--png docs/paths-matrix.png]``
(``pip install -e '.[bench]'`` for the picture).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import fastopen
from fastopen.constants import TCP_FASTOPEN_CONNECT
from fastopen.kernel import tcpinfo
from fastopen.lab.emulator import Lab, check_support
from fastopen.lab.farm import Farm
from fastopen.lab.middlebox import MIDDLEBOXES
from fastopen.lab.netns import SERVER, Netns
from fastopen.lab.router import iptables
from fastopen.lab.servers import kernel_echo
from fastopen.probe import Probe, Target, UserspaceDriver, run
from fastopen.runtime.stack import UserspaceStack

PORT = 8080
REQUEST = b"GET /matrix HTTP/1.1\r\nHost: lab\r\nX-Pad: " + b"x" * 54 + b"\r\n\r\n"
CONNECTIONS = 10
TIMEOUT = 3.0
GIVE_UP = 3
CLIENTS = ("linux", "fastopen-kernel", "userspace")


@dataclass
class Conn:
    ok: bool
    ttfb_ms: float | None
    tfo: bool


@dataclass
class Row:
    box: str
    runs: dict[str, list[Conn]] = field(default_factory=dict)


def _linux(client: Netns, addr: str = SERVER.ipv4, body: bytes = REQUEST) -> Conn:
    """One request by the kernel's client, as applications use TFO (TCP_FASTOPEN_CONNECT)."""
    with client.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
        start = time.perf_counter()
        try:
            sock.connect((addr, PORT))
            sock.sendall(body)
            first = sock.recv(4096)
        except OSError:
            return Conn(False, None, False)
        ttfb = (time.perf_counter() - start) * 1000
        return Conn(bool(first), ttfb if first else None, tcpinfo.read(sock).syn_data)


def _fastopen_kernel(client: Netns) -> Conn:
    start = time.perf_counter()
    try:
        with client.entered():
            sock = fastopen.create_connection((SERVER.ipv4, PORT), REQUEST, timeout=TIMEOUT)
        with sock:
            first = sock.recv(4096)
            ttfb = (time.perf_counter() - start) * 1000
            return Conn(bool(first), ttfb if first else None, fastopen.report(sock).used)
    except OSError:
        return Conn(False, None, False)


def _sequence(connect: Callable[[], Conn]) -> list[Conn]:
    done: list[Conn] = []
    for _ in range(CONNECTIONS):
        done.append(connect())
        if len(done) >= GIVE_UP and not any(c.ok for c in done[-GIVE_UP:]):
            break
    return done


async def _userspace_run(client: Netns) -> list[Conn]:
    stack = UserspaceStack.replace_kernel(client)
    done: list[Conn] = []
    try:
        for _ in range(CONNECTIONS):
            start = time.perf_counter()
            try:
                async with asyncio.timeout(TIMEOUT):
                    reader, writer = await stack.open_connection(
                        SERVER.ipv4, PORT, first_flight=REQUEST
                    )
                    first = await reader.read(4096)
                ttfb = (time.perf_counter() - start) * 1000
                done.append(Conn(bool(first), ttfb, writer.get_extra_info("fastopen").used))
                writer.close()
            except (OSError, TimeoutError):
                done.append(Conn(False, None, False))
            if len(done) >= GIVE_UP and not any(c.ok for c in done[-GIVE_UP:]):
                break
    finally:
        stack.close()
    return done


def run_client(box: str, client_name: str) -> list[Conn]:
    with Lab(middleboxes=[box] if box else []) as lab, kernel_echo(lab.server, SERVER.ipv4, PORT):
        if client_name == "linux":
            return _sequence(lambda: _linux(lab.client))
        if client_name == "fastopen-kernel":
            return _sequence(lambda: _fastopen_kernel(lab.client))
        return asyncio.run(_userspace_run(lab.client))


def _ms(conns: list[Conn], index: int) -> str:
    if index >= len(conns):
        return "-"
    c = conns[index]
    return f"{c.ttfb_ms:.0f}" if c.ok and c.ttfb_ms is not None else "fail"


def _tfo(conns: list[Conn]) -> str:
    used = [i + 1 for i, c in enumerate(conns) if c.tfo]
    if not used:
        return "never"
    if used == list(range(used[0], len(conns) + 1)):
        return f"#{used[0]}-#{len(conns)}" if used[0] < len(conns) else f"#{used[0]}"
    return ",".join(f"#{i}" for i in used)


def print_matrix(rows: list[Row]) -> None:
    print(f"{'middlebox':20} {'client':16} {'through':>8} {'1st ms':>7} {'2nd ms':>7} "
          f"{'10th ms':>8}  TFO used")  # fmt: skip
    for row in rows:
        for name, conns in row.runs.items():
            through = f"{sum(c.ok for c in conns)}/{len(conns)}"
            print(
                f"{row.box or 'none':20} {name:16} {through:>8} {_ms(conns, 0):>7} "
                f"{_ms(conns, 1):>7} {_ms(conns, 9):>8}  {_tfo(conns)}"
            )


# -- the rule: a SYN-data-dropping server namespace ------------------------------------
RULE = ["INPUT", "-p", "tcp", "--syn", "-m", "length", "--length", "100:65535", "-j", "DROP"]


def learned(backoff: float = 2.0) -> None:
    """20 connections of each kernel client behind the issue's rule in the server's namespace;
    then the rule goes, and after the backoff TFO comes back for fastopen's client."""
    os.environ["FASTOPEN_TFO_BACKOFF"] = str(backoff)
    try:
        for name, connect in (("linux", _linux), ("fastopen-kernel", _fastopen_kernel)):
            with Lab() as lab, kernel_echo(lab.server, SERVER.ipv4, PORT):
                iptables(lab.server, ["-A", *RULE])
                conns = [connect(lab.client) for _ in range(20)]
                slowest = max(c.ttfb_ms or float("inf") for c in conns[2:])
                line = (
                    f"behind the SYN-data drop, {name:15}: 1st {_ms(conns, 0)} ms, 2nd "
                    f"{_ms(conns, 1)} ms, 3rd-20th at most {slowest:.1f} ms"
                )
                if name == "fastopen-kernel":
                    iptables(lab.server, ["-D", *RULE])
                    time.sleep(backoff + 0.2)
                    back = connect(lab.client)
                    line += f"; rule removed, after {backoff:g} s: TFO used {back.tfo}"
                print(line)
    finally:
        del os.environ["FASTOPEN_TFO_BACKOFF"]


# -- farms -----------------------------------------------------------------------------------
def _farm_tfo(shared: bool, count: int = 10) -> tuple[int, int, str]:
    """TFO use of ``count`` kernel connections to a farm of 2 taking turns; the probe."""
    with Farm(servers=2, shared_key=shared, policy="round_robin") as farm, farm.serve(PORT):
        conns = [_linux(farm.client, farm.vip) for _ in range(count + 1)]  # 1st: a cookie
        used = sum(c.tfo for c in conns[1:])
        farm.steer("round_robin")

        async def probe() -> str:
            driver = UserspaceDriver(UserspaceStack.replace_kernel(farm.client))
            try:
                [result] = await run([Target(farm.vip, PORT)], driver, Probe(repeat=3))
            finally:
                driver.close()
            return f"{result.verdict.value}, cookie_stable {result.cookie_stable}"

        return used, count, asyncio.run(probe())


def _duplicates(trials: int) -> tuple[int, int]:
    """The seed's third case: how many of ``trials`` requests two servers processed."""
    twice = 0
    with Farm(servers=2, shared_key=True, policy=0) as farm, farm.serve(PORT) as served:
        _linux(farm.client, farm.vip, b"warm")  # a cookie, good on both servers
        for trial in range(trials):
            farm.steer("round_robin")  # this SYN to server 0, its retransmission to server 1
            farm.drop_syn_acks(6, server=0)
            body = f"pay-{trial}".encode()
            _linux(farm.client, farm.vip, body)
            twice += body in served[0].requests and body in served[1].requests
    return twice, trials


# -- NAT -------------------------------------------------------------------------------------
def nat_share(pool: int, mapping: str, count: int = 40) -> float:
    """The share of ``count`` kernel TFO connections (after a cookie request) whose SYN data
    was accepted behind a carrier-grade NAT with ``pool`` addresses."""
    with (
        Lab(middleboxes=[f"cgnat:pool={pool},mapping={mapping}"]) as lab,
        kernel_echo(lab.server, SERVER.ipv4, PORT),
    ):
        conns = [_linux(lab.client) for _ in range(count + 1)][1:]
    return sum(c.tfo for c in conns) / count


def draw(rows: list[Row], nat: dict[str, list[tuple[int, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(13, 0.5 * len(rows) + 2), gridspec_kw={"width_ratios": [3, 1.2]}
    )
    colors = {"tfo": "#4caf50", "fast": "#cddc39", "slow": "#ff9800", "fail": "#e53935"}
    for y, row in enumerate(rows):
        for x, name in enumerate(CLIENTS):
            conns = row.runs[name]
            later = conns[1:]
            if 2 * sum(c.ok for c in conns) < len(conns):
                state = "fail"
            elif any(c.tfo for c in conns[2:]):
                state = "tfo"
            elif later and all(c.ok and (c.ttfb_ms or 0) < 500 for c in conns[2:]):
                state = "fast"
            else:
                state = "slow"
            ax.add_patch(plt.Rectangle((x, y), 0.96, 0.92, color=colors[state]))
            text = f"{_ms(conns, 0)} / {_ms(conns, 1)} / {_ms(conns, 9)} ms\nTFO {_tfo(conns)}"
            ax.text(x + 0.48, y + 0.46, text, ha="center", va="center", fontsize=7.5)
    ax.set_xlim(0, len(CLIENTS))
    ax.set_ylim(len(rows), 0)
    ax.set_xticks([i + 0.48 for i in range(len(CLIENTS))], CLIENTS)
    ax.set_yticks([i + 0.46 for i in range(len(rows))], [r.box or "none" for r in rows])
    ax.tick_params(length=0)
    ax.set_title(
        "time to first byte of connections 1 / 2 / 10; green: TFO used from #3 on,\n"
        "yellow: through fast without TFO, orange: slow, red: most requests failed",
        fontsize=9,
    )
    for spine in ax.spines.values():
        spine.set_visible(False)
    for mapping, points in nat.items():
        ax2.plot([p for p, _ in points], [s * 100 for _, s in points], marker="o", label=mapping)
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("public addresses in the CGNAT pool")
    ax2.set_ylabel("connections using TFO (%)")
    ax2.set_ylim(-5, 105)
    ax2.legend(title="mapping", fontsize=8)
    ax2.set_title("TFO behind a carrier-grade NAT", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--png", type=Path, help="Draw the matrix and the NAT curve here.")
    parser.add_argument("--duplicates", type=int, default=5, help="Trials of the seed's case.")
    args = parser.parse_args()
    check_support("bench/middleboxes.py")
    with tempfile.TemporaryDirectory(prefix="fo-paths-") as tmp:
        os.environ["FASTOPEN_PATHS_DIR"] = tmp  # a path cache of the bench's own
        learned()
        print()
        rows = []
        for box in ["", *MIDDLEBOXES]:
            row = Row(box, {name: run_client(box, name) for name in CLIENTS})
            rows.append(row)
        print_matrix(rows)
        print()
        for shared in (True, False):
            used, count, probe = _farm_tfo(shared)
            key = "shared key" if shared else "own keys  "
            print(f"farm of 2, {key}: TFO used on {used}/{count} connections; probe: {probe}")
        twice, trials = _duplicates(args.duplicates)
        print(f"seed's third duplicate case (SYN-ACK lost, SYN retransmitted to the other "
              f"server): request processed twice in {twice}/{trials} trials")  # fmt: skip
        print()
        nat: dict[str, list[tuple[int, float]]] = {"random": [], "rotate": []}
        for mapping in nat:
            for pool in (1, 2, 4, 8):
                share = nat_share(pool, mapping)
                nat[mapping].append((pool, share))
                print(f"CGNAT pool {pool}, {mapping} mapping: TFO on {share:.0%} of connections")
    if args.png:
        draw(rows, nat, args.png)
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
