"""What a probe finds: targets, the outcome of each connection, the verdict."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastopen.errors import FastOpenError


class Verdict(enum.Enum):
    TFO = "tfo"
    COOKIE_ONLY = "cookie_only"
    NO_COOKIE = "no_cookie"
    SYN_OPTION_BLOCKED = "syn_option_blocked"
    SYN_DATA_BLOCKED = "syn_data_blocked"
    OFFLINE = "offline"


class Step(enum.Enum):
    PLAIN = "plain"
    REQUEST_34 = "cookie_request_34"
    REQUEST_254 = "cookie_request_254"
    DATA = "syn_data"
    PLAIN_AFTER = "plain_after"


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int = 80) -> Target:
        """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address."""
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or str(default_port)
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        else:
            host, port = text, str(default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise FastOpenError(f"{text!r} is not a target", hint="HOST[:PORT], [IPV6]:PORT")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class Outcome:
    """One connection of a probe: what its SYN got back."""

    step: Step
    #: The request was answered (the first bytes of the response arrived).
    ok: bool = False
    #: The first SYN got a SYN-ACK (no SYN retransmission was needed).
    first_syn_answered: bool = False
    #: The SYN carried the TFO option (a request, or a cookie) of this kind.
    sent_kind: int | None = None
    #: The cookie the SYN-ACK carried (or the cache holds after it), and its option kind.
    cookie: bytes | None = None
    cookie_kind: int | None = None
    #: SYN data the SYN-ACK acknowledged, in bytes.
    syn_data_acked: int = 0
    reset: bool = False
    ttfb_ms: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step.value,
            "ok": self.ok,
            "first_syn_answered": self.first_syn_answered,
            "sent_kind": self.sent_kind,
            "cookie": None if self.cookie is None else self.cookie.hex(),
            "cookie_kind": self.cookie_kind,
            "syn_data_acked": self.syn_data_acked,
            "reset": self.reset,
            "ttfb_ms": None if self.ttfb_ms is None else round(self.ttfb_ms, 3),
            "error": self.error,
        }


@dataclass
class Result:
    """The probe of one target: the verdict and what it rests on."""

    target: Target
    verdict: Verdict
    option_kind: int | None
    cookie: bytes | None
    cookie_stable: bool | None
    syn_data_acked: int
    ttfb_ms: dict[str, float | None]
    #: The last plain connection failed where the first worked: a box that drops a client's
    #: SYNs once it saw TFO.
    blackhole_after_tfo: bool
    driver: str
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "target": str(self.target),
            "verdict": self.verdict.value,
            "option_kind": self.option_kind,
            "cookie": None if self.cookie is None else self.cookie.hex(),
            "cookie_stable": self.cookie_stable,
            "syn_data_acked": self.syn_data_acked,
            "ttfb_ms": {k: None if v is None else round(v, 3) for k, v in self.ttfb_ms.items()},
            "blackhole_after_tfo": self.blackhole_after_tfo,
            "driver": self.driver,
            "error": self.error,
            "outcomes": [o.to_json() for o in self.outcomes],
        }

    def describe(self) -> str:
        ttfb = ", ".join(
            f"{k} {'-' if v is None else f'{v:.1f} ms'}" for k, v in self.ttfb_ms.items()
        )
        parts = [f"{self.target}: {self.verdict.value}"]
        if self.option_kind is not None:
            parts.append(f"kind {self.option_kind}")
        if self.cookie is not None:
            parts.append(f"cookie {self.cookie.hex()}")
            parts.append("stable" if self.cookie_stable else "cookie changes")
        parts.append(f"SYN data acked {self.syn_data_acked} B")
        parts.append(f"ttfb {ttfb}")
        if self.blackhole_after_tfo:
            parts.append("plain SYNs dropped after TFO")
        if self.error:
            parts.append(self.error)
        return "; ".join(parts)


def verdict(outcomes: Sequence[Outcome]) -> Verdict:
    """The verdict the outcomes of one probe support (see the module docstring)."""
    by = {o.step: o for o in outcomes if o.step is not Step.DATA}
    plain = by.get(Step.PLAIN)
    if plain is None or not plain.ok:
        return Verdict.OFFLINE
    requests = [by[s] for s in (Step.REQUEST_34, Step.REQUEST_254) if s in by]
    if not any(r.first_syn_answered for r in requests):
        return Verdict.SYN_OPTION_BLOCKED
    if not any(r.cookie for r in requests if r.first_syn_answered):
        return Verdict.NO_COOKIE
    data = [o for o in outcomes if o.step is Step.DATA]
    if not data or not data[0].first_syn_answered:
        return Verdict.SYN_DATA_BLOCKED
    return Verdict.TFO if data[0].syn_data_acked else Verdict.COOKIE_ONLY


def summarize(target: Target, outcomes: list[Outcome], driver: str) -> Result:
    """The :class:`Result` of a finished probe."""
    by = {o.step: o for o in outcomes if o.step is not Step.DATA}
    data = [o for o in outcomes if o.step is Step.DATA]
    kind = next(
        (
            r.cookie_kind or r.sent_kind
            for r in (by.get(Step.REQUEST_34), by.get(Step.REQUEST_254))
            if r is not None and r.cookie and r.first_syn_answered
        ),
        None,
    )
    cookies = [o.cookie for o in outcomes if o.cookie and o.step is not Step.PLAIN]
    plain, after = by.get(Step.PLAIN), by.get(Step.PLAIN_AFTER)
    return Result(
        target=target,
        verdict=verdict(outcomes),
        option_kind=kind,
        cookie=cookies[0] if cookies else None,
        cookie_stable=len(set(cookies)) == 1 if cookies else None,
        syn_data_acked=data[0].syn_data_acked if data else 0,
        ttfb_ms={
            "plain": plain.ttfb_ms if plain else None,
            "tfo": data[0].ttfb_ms if data and data[0].syn_data_acked else None,
        },
        blackhole_after_tfo=bool(plain and plain.ok and after is not None and not after.ok),
        driver=driver,
        outcomes=outcomes,
    )


#: An idempotent request (it may ride in a SYN, so it may be delivered twice).
REQUEST = b"HEAD / HTTP/1.1\r\nHost: %s\r\nUser-Agent: fastopen-probe\r\nConnection: close\r\n\r\n"


@dataclass
class Probe:
    """How to probe: the request, repeats of the SYN data, and the bounds.

    ``attempt_timeout`` bounds one connection (long enough for one SYN retransmission, 1 s, and
    its answer), ``timeout`` a whole target; ``concurrency`` targets run at once, and at most
    ``rate`` connections start per second (all targets together).
    """

    request: bytes | None = None
    repeat: int = 3
    attempt_timeout: float = 2.5
    timeout: float = 30.0
    concurrency: int = 16
    rate: float = 20.0

    def request_for(self, target: Target) -> bytes:
        return self.request if self.request is not None else REQUEST % target.host.encode()
