"""Why a sender is slower at loss: the kernel and the engine sending the same file over the same
lossy link, each transfer's packets taken apart.

For each ``--seed`` (the link drops the same packets of each direction in every run with the same
seed), one ``--size`` MiB download through a fresh lab link (``--rtt``, ``--loss``) from each
sender: nginx on the kernel running Reno (``tcp_congestion_control=reno`` in both namespaces), and
``fastopen serve --stack userspace --offloads --congestion CC`` (CC from ``--cc``, Reno by
default), curl receiving. The link records every packet as the sender's side sees it; from that
record each row prints:

- ``MB/s``: curl's rate; ``drops``: the data packets the link dropped (its own count);
- ``rtx``: the sender's retransmissions (a segment sent again);
- ``segs/ack``: new segments a receiver's ACK acknowledges on average (the kernel's receiver
  sends one ACK per burst it read in one go);
- ``train``: the median number of data packets sent back to back (under 0.1 ms apart);
- ``flight``: the time average of the data in flight (sent, not yet acknowledged), packets;
- ``after/before``: for each loss (a retransmission at least ``6 RTT`` after the one before),
  the mean flight 2 to 4 RTTs after it over the largest flight in the RTT before it, median.

Same drops and rtx with a lower ``flight`` and ``after/before`` is a sender that gives up more of
its window at each loss (issue 11's goal at 1% loss: the engine >= 1.0x the kernel running Reno).

Needs root, nginx and curl. ``.venv/bin/python bench/loss_anatomy.py [--seed 1 --seed 2]
[--size 20] [--rtt 20] [--loss 1] [--cc reno]``
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bulk import ENGINE_PORT, NGINX_PORT, Bench, Engine, Row, congestion_control, nginx

from fastopen.engine import ENGINE_BUILD
from fastopen.engine.cc import NAMES
from fastopen.engine.seq import MASK
from fastopen.errors import MalformedPacket
from fastopen.lab.emulator import Lab, check_support
from fastopen.pcap import read_pcap
from fastopen.wire import TcpSegment, parse_ip

#: Data packets sent less than this apart are one train.
TRAIN_GAP = 0.0001


@dataclass
class Anatomy:
    rate: float
    drops: int
    rtx: int
    segs_per_ack: float
    train: float
    flight: float
    after_before: float


def _events(
    capture: Path, port: int
) -> tuple[list[tuple[float, int, int]], list[tuple[float, int]]]:
    """The sender's data packets (time, start, end) and the receiver's ACKs (time, ack), with
    sequence numbers relative to the sender's first data byte."""
    sent: list[tuple[float, int, int]] = []
    acks: list[tuple[float, int]] = []
    base: int | None = None
    for packet in read_pcap(capture):
        try:
            seg = TcpSegment.parse(parse_ip(packet.data).payload)
        except MalformedPacket:
            continue
        if seg.src_port == port and seg.payload:
            if base is None:
                base = seg.seq
            start = (seg.seq - base) & MASK
            sent.append((packet.time, start, start + len(seg.payload)))
        elif seg.dst_port == port and base is not None:
            acks.append((packet.time, (seg.ack - base) & MASK))
    return sent, acks


def anatomy(capture: Path, port: int, rtt: float, rate: float, drops: int) -> Anatomy:
    sent, acks = _events(capture, port)
    mss = statistics.mode(end - start for _, start, end in sent)
    timeline = sorted([(t, 0, end) for t, _, end in sent] + [(t, 1, ack) for t, ack in acks])
    highest = acked = 0
    flights: list[tuple[float, float]] = []  # (time, packets in flight) after each event
    rtx_times: list[float] = []
    for t, is_ack, value in timeline:
        if is_ack:
            acked = max(acked, value)
        else:
            if value <= highest:
                rtx_times.append(t)
            highest = max(highest, value)
        flights.append((t, max(0, highest - acked) / mss))
    area = sum(f * (b - a) for (a, f), (b, _) in itertools.pairwise(flights))
    span = flights[-1][0] - flights[0][0]
    trains, run = [], 1
    for (a, _, _), (b, _, _) in itertools.pairwise(sent):
        if b - a < TRAIN_GAP:
            run += 1
        else:
            trains.append(run)
            run = 1
    trains.append(run)
    times = [t for t, _ in flights]

    def between(a: float, b: float) -> list[float]:
        return [f for _, f in flights[bisect.bisect_left(times, a) : bisect.bisect_left(times, b)]]

    ratios = []
    for prev, loss in zip([-1.0, *rtx_times[:-1]], rtx_times, strict=True):
        if loss - prev < 6 * rtt:
            continue
        peak = max(between(loss - rtt, loss), default=0.0)
        after = between(loss + 2 * rtt, loss + 4 * rtt)
        if peak and after:
            ratios.append(statistics.fmean(after) / peak)
    return Anatomy(
        rate=rate,
        drops=drops,
        rtx=len(rtx_times),
        segs_per_ack=highest / mss / max(1, len(acks)),
        train=statistics.median(trains),
        flight=area / span if span else 0.0,
        after_before=statistics.median(ratios) if ratios else float("nan"),
    )


def transfer(
    bench: Bench, who: str, engine: Engine | None, args: argparse.Namespace, seed: int, folder: Path
) -> Anatomy:
    capture = folder / f"{who}-{seed}.pcap"
    rtt = args.rtt / 1000
    row = Row()
    with Lab(rtt=rtt, loss=args.loss / 100, seed=seed, capture=capture) as lab:
        addr = lab.server_addr.ipv4
        with nginx(lab.server, bench.folder):
            if engine is None:
                with congestion_control((lab.client, lab.server), "reno"):
                    bench.curl(lab.client, f"http://{addr}:{NGINX_PORT}/bulk.bin", row, who)
                port = NGINX_PORT
            else:
                with bench.engine_server(lab.server, addr, engine):
                    bench.curl(lab.client, f"http://{addr}:{ENGINE_PORT}/", row, who)
                port = ENGINE_PORT
        drops = lab.stats().s2c.dropped
    return anatomy(capture, port, rtt, row.rates[0], drops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="link seed (repeatable)")
    parser.add_argument("--size", type=int, default=20, help="MiB per transfer")
    parser.add_argument("--rtt", type=float, default=20.0, help="ms")
    parser.add_argument("--loss", type=float, default=1.0, help="percent, each direction")
    parser.add_argument("--cc", choices=NAMES, default="reno", help="the engine's")
    args = parser.parse_args()
    check_support("bench/loss_anatomy.py")
    print(
        f"{args.size} MiB through RTT {args.rtt:g} ms, loss {args.loss:g}%; kernel reno against "
        f"engine {args.cc} (the engine {ENGINE_BUILD})"
    )
    print(f"{'seed':>4} {'sender':<14}{'MB/s':>7}{'drops':>7}{'rtx':>6}{'segs/ack':>10}"
          f"{'train':>7}{'flight':>8}{'after/before':>14}")  # fmt: skip
    senders: list[tuple[str, Engine | None]] = [
        ("kernel reno", None),
        (f"engine {args.cc}", Engine("engine", options=("--congestion", args.cc))),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _ in senders}
    with tempfile.TemporaryDirectory(prefix="fastopen-anatomy-") as tmp:
        folder = Path(tmp)
        bench = Bench(folder, args.size, 300.0)
        for seed in args.seed or [1]:
            for name, engine in senders:
                a = transfer(bench, name.split()[0], engine, args, seed, folder)
                rates[name].append(a.rate)
                cells = f"{a.rate:7.3f}{a.drops:7d}{a.rtx:6d}{a.segs_per_ack:10.2f}{a.train:7.0f}"
                print(
                    f"{seed:>4} {name:<14}{cells}{a.flight:8.2f}{a.after_before:14.2f}", flush=True
                )
    kernel, engine_rates = (statistics.median(r) for r in rates.values())
    print(f"engine / kernel reno, medians: {engine_rates / kernel:.2f}")


if __name__ == "__main__":
    main()
