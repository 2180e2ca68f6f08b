"""Bulk transfers through the lab link: the userspace engine against the kernel, side by side.

For each link (RTT 0 and 20 ms, loss 0 and 1%; a fresh lab each), ``--runs`` rounds of one
``--size`` MB download over HTTP, each round all of these, in turn:

- kernel: curl in the client namespace from nginx in the server namespace, as a user would
  measure it, and again with both kernels running Reno (``tcp_congestion_control=reno``; the
  namespaces' default is the host's, and CUBIC cannot be chosen inside a namespace here);
- engine receives: ``fastopen get --stack userspace --output`` from the same nginx;
- engine sends: curl from ``fastopen serve --stack userspace --file``;
  both once per ``--cc`` (the engine's ``--congestion``: ``cubic``, its default, ``reno`` or
  ``bbr``; repeatable), and once more with ``--baseline FASTOPEN`` (another build's
  ``fastopen``, say main's, for a before/after in the same run; without ``--congestion``);
- PyTCP receives / sends: the same against PyTCP (bench/pytcp.py installs it in a scratch venv;
  ``--pytcp-runs`` rounds, 1 by default: it is slow; ``--pytcp-runs 0`` leaves it out).

Both fastopen commands run with no ``--address`` (they take the namespace's own address over from
its kernel) and with ``--offloads`` (the TUN device's). A transfer's rate is its bytes over the
time from the start of the connect to the last byte (curl's ``time_total``, ``fastopen get
--json``'s ``total_ms``); every body is checked against the file's hash. A transfer not done in
``--timeout`` seconds counts as that long (its rate is then an upper bound, marked ``<``).
Prints the median of the runs, in MB/s, and the ratios engine / kernel (the kernel running
its default, named as the namespace's tcp_congestion_control reads, and running Reno) against
the goals of issue 11: at 1% loss each engine's against both (say engine cubic against the
kernel running Reno, engine bbr against the kernel's default, BBR here). An engine that receives
is measured against the kernel receiving from the same nginx (the kernel's default sending both);
the goals at loss are a sender's.

Needs root, nginx and curl.
``.venv/bin/python bench/bulk.py [--size 20] [--runs 3] [--cc cubic --cc bbr] [--baseline F]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastopen.engine import ENGINE_BUILD
from fastopen.engine.cc import NAMES
from fastopen.lab.emulator import Lab, check_support
from fastopen.lab.netns import Netns

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytcp import PyTcp, install

FASTOPEN = str(Path(sys.executable).with_name("fastopen"))
NGINX_PORT, ENGINE_PORT, PYTCP_PORT = 8080, 8081, 8082
#: (RTT in s, loss) of each link, in the order measured.
LINKS = [(0.0, 0.0), (0.0, 0.01), (0.02, 0.0), (0.02, 0.01)]
#: The goals of issue 11 (engine / kernel), by link; at loss, against the kernel running Reno.
GOALS = {
    (0.0, 0.0): 0.5,
    (0.02, 0.0): 0.5,
    (0.02, 0.01): 1.0,
}
#: At 20 ms and 1% loss, the engine against the kernel running its default.
DEFAULT_CC_GOAL = 0.3

NGINX_CONF = """
daemon off; master_process off; worker_processes 1; pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off; sendfile on; tcp_nopush on; keepalive_timeout 0;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    server {{
        listen {port} fastopen=16;
        root {dir};
    }}
}}
"""


@dataclass(frozen=True)
class Engine:
    """One userspace engine to measure: its rows' name, the ``fastopen`` it runs, and the
    options it gets."""

    name: str
    exe: str = FASTOPEN
    options: tuple[str, ...] = ()


@dataclass
class Row:
    """The rates of one kind of transfer on one link, MB/s (upper bounds for timed-out ones)."""

    rates: list[float] = field(default_factory=list)
    timed_out: int = 0

    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    def cell(self) -> str:
        mark = "<" if self.timed_out * 2 >= len(self.rates) and self.timed_out else " "
        spread = f"{min(self.rates):.1f}-{max(self.rates):.1f}" if self.rates else "-"
        return f"{mark}{self.median():7.2f} ({spread})"


class Bench:
    def __init__(self, folder: Path, size: int, timeout: float) -> None:
        self.folder = folder
        self.size = size
        self.timeout = timeout
        self.body = folder / "bulk.bin"
        block = hashlib.sha256(b"fastopen bulk").digest() * 32768  # 1 MiB
        with self.body.open("wb") as out:
            for _ in range(size):
                out.write(block)
        self.digest = hashlib.sha256(self.body.read_bytes()).hexdigest()
        self.got = folder / "got.bin"

    def _check(self, path: Path, what: str) -> None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != self.digest:
            raise SystemExit(f"{what}: the body that arrived is not the file ({path})")

    def _rate(self, row: Row, seconds: float | None) -> None:
        if seconds is None:
            row.timed_out += 1
            seconds = self.timeout
        row.rates.append(self.size * 1048576 / seconds / 1e6)

    def curl(self, client: Netns, url: str, row: Row, what: str) -> None:
        self.got.unlink(missing_ok=True)
        proc = client.run(
            ["curl", "-s", "-o", str(self.got), "--max-time", f"{self.timeout:g}",
             "-w", "%{http_code} %{size_download} %{time_total}", url],
            check=False, timeout=self.timeout + 30,
        )  # fmt: skip
        code, size, total = proc.stdout.split()
        if proc.returncode == 28:  # curl's timeout
            self._rate(row, None)
            return
        if proc.returncode != 0 or code != "200" or int(size) != self.body.stat().st_size:
            raise SystemExit(f"{what}: curl failed ({proc.returncode}, {proc.stdout!r})")
        self._check(self.got, what)
        self._rate(row, float(total))

    def engine_get(self, client: Netns, url: str, row: Row, engine: Engine) -> None:
        self.got.unlink(missing_ok=True)
        proc = client.run(
            [engine.exe, "get", "--stack", "userspace", "--offloads", *engine.options, "--json",
             "--output", str(self.got), "--timeout", f"{self.timeout:g}", url],
            check=False, timeout=self.timeout + 30,
        )  # fmt: skip
        if proc.returncode != 0:
            if "no answer within" in proc.stderr:
                self._rate(row, None)
                return
            raise SystemExit(f"fastopen get failed: {proc.stderr.strip()}")
        answer = json.loads(proc.stdout)
        self._check(self.got, "engine receives")
        self._rate(row, float(answer["total_ms"]) / 1000)

    def pytcp_get(self, python: Path, client: Netns, addr: str, server: str, row: Row) -> None:
        self.got.unlink(missing_ok=True)
        where = (server, str(NGINX_PORT), "/bulk.bin")
        workload = ("get", *where, str(self.got), f"{self.timeout:g}")
        with PyTcp(python, client, addr, *workload) as peer:
            answer = peer.result(self.timeout + 30)
        if answer.get("timed_out"):
            self._rate(row, None)
            return
        self._check(self.got, "pytcp receives")
        self._rate(row, float(answer["total"]))

    @contextmanager
    def engine_server(self, server: Netns, addr: str, engine: Engine) -> Iterator[None]:
        proc = server.popen(
            [engine.exe, "serve", "--stack", "userspace", "--offloads", *engine.options,
             "--file", str(self.body), "-q", addr, str(ENGINE_PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            if "serving" not in proc.stdout.readline():
                raise SystemExit(f"fastopen serve did not start: {proc.communicate()[1]}")
            yield
        finally:
            # SIGTERM stops it as Ctrl-C does, the addresses given back; not SIGINT, which a
            # bench started in the background (a shell's asynchronous command) passes on ignored
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
                err += "\n(killed 10 s after SIGTERM: the addresses were not given back)"
            if proc.returncode != 0 and sys.exc_info()[0] is None:
                raise SystemExit(f"fastopen serve stopped with {proc.returncode}: {err.strip()}")


@contextmanager
def nginx(ns: Netns, folder: Path) -> Iterator[None]:
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=NGINX_PORT))
    proc = ns.popen(["nginx", "-c", str(conf), "-p", str(folder)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while f":{NGINX_PORT} " not in ns.run(["ss", "-ltnH"]).stdout:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nginx did not start: {proc.communicate()[1]!r}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def congestion_control(namespaces: tuple[Netns, ...], name: str | None) -> Iterator[None]:
    """Both kernels on ``name`` for the block (None: as they are)."""
    if name is None:
        yield
        return
    old = [ns.sysctl("net.ipv4.tcp_congestion_control") for ns in namespaces]
    for ns in namespaces:
        ns.sysctl("net.ipv4.tcp_congestion_control", name)
    try:
        yield
    finally:
        for ns, value in zip(namespaces, old, strict=True):
            ns.sysctl("net.ipv4.tcp_congestion_control", value)


def measure(
    bench: Bench,
    rtt: float,
    loss: float,
    runs: int,
    python: Path | None,
    pytcp_runs: int,
    engines: list[Engine],
) -> tuple[dict[str, Row], str]:
    """The rows of one link, and the kernel's default congestion control there."""
    rows = {"kernel": Row(), "kernel reno": Row()}
    for engine in engines:
        rows[f"{engine.name} receives"] = Row()
        rows[f"{engine.name} sends"] = Row()
    rows["pytcp receives"] = Row()
    rows["pytcp sends"] = Row()
    with Lab(rtt=rtt, loss=loss, seed=11) as lab:
        client, server = lab.client, lab.server
        addr = lab.server_addr.ipv4
        default_cc = client.sysctl("net.ipv4.tcp_congestion_control")
        with nginx(server, bench.folder):
            for _ in range(runs):
                bench.curl(client, f"http://{addr}:{NGINX_PORT}/bulk.bin", rows["kernel"], "kernel")
                if default_cc != "reno":
                    with congestion_control((client, server), "reno"):
                        bench.curl(
                            client, f"http://{addr}:{NGINX_PORT}/bulk.bin", rows["kernel reno"],
                            "kernel reno",
                        )  # fmt: skip
                for engine in engines:
                    bench.engine_get(
                        client, f"http://{addr}:{NGINX_PORT}/bulk.bin",
                        rows[f"{engine.name} receives"], engine,
                    )  # fmt: skip
                    with bench.engine_server(server, addr, engine):
                        bench.curl(
                            client, f"http://{addr}:{ENGINE_PORT}/",
                            rows[f"{engine.name} sends"], f"{engine.name} sends",
                        )  # fmt: skip
            for _ in range(pytcp_runs if python is not None else 0):
                assert python is not None
                bench.pytcp_get(python, client, lab.client_addr.ipv4, addr, rows["pytcp receives"])
                with PyTcp(python, server, addr, "serve", str(PYTCP_PORT), str(bench.body)) as peer:
                    bench.curl(
                        client, f"http://{addr}:{PYTCP_PORT}/", rows["pytcp sends"], "pytcp sends"
                    )
                    peer.stop()
    return {name: row for name, row in rows.items() if row.rates}, default_cc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20, help="MiB per transfer")
    parser.add_argument("--runs", type=int, default=3, help="rounds per link (medians)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per transfer")
    parser.add_argument("--pytcp-runs", type=int, default=1, help="rounds of PyTCP (0: none)")
    parser.add_argument(
        "--cc", action="append", choices=NAMES,
        help="the engine's congestion control (repeatable: one engine each; default cubic)",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", metavar="FASTOPEN",
        help="another build's fastopen executable, measured alongside as 'baseline'",
    )  # fmt: skip
    parser.add_argument(
        "--link", action="append", metavar="RTT_MS:LOSS_PCT",
        help="a link to measure (repeatable; default: 0:0 0:1 20:0 20:1)",
    )  # fmt: skip
    args = parser.parse_args()
    check_support("bench/bulk.py")
    for tool in ("nginx", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/bulk.py needs {tool} (./dev installs it)")
    engines = [Engine(f"engine {cc}", options=("--congestion", cc)) for cc in args.cc or ["cubic"]]
    if args.baseline:
        engines.append(Engine("baseline", str(Path(args.baseline).resolve())))
    links = LINKS
    if args.link:
        links = [(float(r) / 1000, float(p) / 100) for r, p in (x.split(":") for x in args.link)]

    print(
        f"bulk transfers of {args.size} MiB through the lab link, MB/s: median (min-max) of "
        f"{args.runs} runs; '<' timed out at {args.timeout:g} s; the engine "
        f"{ENGINE_BUILD}"
    )
    python, why = install() if args.pytcp_runs else (None, "--pytcp-runs 0")
    if python is None:
        print(f"PyTCP left out: {why}")
    with tempfile.TemporaryDirectory(prefix="fo-bulk-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)  # nginx's worker reads the file
        bench = Bench(folder, args.size, args.timeout)
        for rtt, loss in links:
            rows, default_cc = measure(
                bench, rtt, loss, args.runs, python, args.pytcp_runs, engines
            )
            print(f"\nRTT {rtt * 1000:g} ms, loss {loss * 100:g}%")
            for name, row in rows.items():
                print(f"  {name:22} {row.cell()}")
            kernel = rows["kernel"].median()
            reno = rows["kernel reno"].median() if "kernel reno" in rows else kernel
            goal = GOALS.get((rtt, loss))
            # a sender's goal at loss is against the kernel running Reno, else its default
            reference, against = (reno, "kernel reno") if loss else (kernel, "kernel default")
            for name in rows:
                if not name.startswith(("engine", "baseline")):
                    continue
                rate = rows[name].median()
                if name.endswith("receives"):  # from the same nginx as the kernel's curl
                    line = f"  {name} / kernel (the same sender, {default_cc}): {rate / kernel:.2f}"
                    if goal is not None and not loss:
                        verdict = "met" if rate / kernel >= goal else "NOT met"
                        line += f"   (goal >= {goal:g}: {verdict})"
                    elif loss:
                        line += "   (the goals at loss are a sender's)"
                else:
                    line = f"  {name} / kernel default ({default_cc}): {rate / kernel:.2f}"
                    line += f"   / kernel reno: {rate / reno:.2f}"
                    if goal is not None:
                        verdict = "met" if rate / reference >= goal else "NOT met"
                        line += f"   (goal vs {against} >= {goal:g}: {verdict}"
                        if loss:
                            verdict = "met" if rate / kernel >= DEFAULT_CC_GOAL else "NOT met"
                            line += f", vs default ({default_cc}) >= {DEFAULT_CC_GOAL:g}: {verdict}"
                        line += ")"
                print(line)
                direction = name.rsplit(" ", 1)[1]
                if name.startswith("engine") and f"baseline {direction}" in rows:
                    before = rows[f"baseline {direction}"].median()
                    print(f"  {name} / baseline {direction}: {rate / before:.2f}")
                other = f"pytcp {direction}"
                if other in rows:
                    ahead = rows[name].median() / rows[other].median()
                    verdict = "ahead" if ahead > 1 else "NOT ahead"
                    print(f"  {name} / {other}: {ahead:.2f} ({verdict} of PyTCP)")


if __name__ == "__main__":
    main()
