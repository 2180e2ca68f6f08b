"""The probe: which TFO a path lets through, by PATHspider's A/B method.

For each target, one connection after the other: (A) a plain connection, no TFO option; (B) a
cookie request with option kind 34, and one with kind 254 (the experimental kind of RFC 6994);
then SYN data with the cookie received, repeated (:attr:`Probe.repeat`) to see whether the
cookie stays the same (it does not behind a farm without a shared key, or a carrier-grade NAT
that changes the client's address); and a last plain connection (some boxes drop every SYN of a
client once they saw TFO). Each connection sends :attr:`Probe.request` and reads the first
bytes of the answer. The verdict:

``tfo``                cookie received, SYN data acknowledged
``cookie_only``        cookie received, SYN data not acknowledged
``no_cookie``          connects, no cookie
``syn_option_blocked`` SYNs with the TFO option get no answer, plain SYNs do
``syn_data_blocked``   SYNs with data get no answer (or a reset), cookie requests do
``offline``            even the plain connection fails

"No answer" means the first SYN went unanswered: the handshake needed a retransmitted SYN (which
Linux sends without the option and the data) or never completed.

Two ways to send the SYNs (:mod:`fastopen.probe.drivers`): the userspace engine, which takes
over the addresses of the namespace it runs in (root, and never the root namespace), and so
controls the option kind, the cookie and the data of each SYN, and records every packet
(``pcap``); or kernel sockets (no root needed): kind 34 only (the kernel picks the kind), the
cookie read from ``tcp_metrics``, and a cookie request only when the kernel has no cookie cached
for the target (as root the probe flushes it first).
"""

from fastopen.probe.drivers import Driver, KernelDriver, UserspaceDriver
from fastopen.probe.method import run
from fastopen.probe.model import Outcome, Probe, Result, Step, Target, Verdict, verdict

__all__ = [
    "Driver",
    "KernelDriver",
    "Outcome",
    "Probe",
    "Result",
    "Step",
    "Target",
    "UserspaceDriver",
    "Verdict",
    "run",
    "verdict",
]
