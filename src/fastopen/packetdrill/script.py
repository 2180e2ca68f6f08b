"""The packetdrill script language (the subset TCP Fast Open tests use), parsed into an AST.

A script is a list of events, each with a time and one action: an inbound (``<``) or outbound
(``>``) packet, a system call with its expected result, a backtick shell command, or a
``%{ ... }%`` Python block. ``--name=value`` lines set options. Comments are ``//`` to the end
of the line and ``/* ... */``. Every node keeps the line it starts on, for error messages.
"""

from __future__ import annotations

import bisect
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fastopen.packetdrill.errors import ScriptSyntaxError
from fastopen.wire import (
    ECN_CE,
    ECN_ECT_0,
    ECN_ECT_1,
    ECN_NOT_ECT,
    TCP_MD5_DIGEST_LEN,
    TCPOPT_MD5SIG,
    Eol,
    FastOpen,
    Md5Sig,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    Timestamps,
    UnknownOption,
    WindowScale,
)

# -- time --------------------------------------------------------------------------------------


class TimeKind(enum.Enum):
    ABSOLUTE = "absolute"
    RELATIVE = "relative"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class EventTime:
    """``0.1``, ``+0.1``, ``*``; ``start~end`` is a range; ``start...end`` a blocking call's end.

    ``end`` is relative to the start time when ``end_relative`` (``+0.1~+0.2`` or ``+0...0.02``).
    """

    kind: TimeKind
    start: float = 0.0
    end: float | None = None
    end_relative: bool = False
    blocking: bool = False


# -- syscall argument expressions --------------------------------------------------------------


class Ellipsis_(enum.Enum):
    """``...``: any value (an address, a buffer, a length)."""

    ELLIPSIS = "..."


ELLIPSIS = Ellipsis_.ELLIPSIS


@dataclass(frozen=True, slots=True)
class Name:
    """A symbol: ``SOL_TCP``, ``MSG_FASTOPEN``, ``O_NONBLOCK``..."""

    name: str


@dataclass(frozen=True, slots=True)
class Quoted:
    """A C string literal, its escapes decoded to bytes."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``[1]``, ``[{...}, ...]``."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class StructExpr:
    """``{...}`` with positional or ``key=value`` members."""

    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class KeyValue:
    """``key=value`` inside a struct (the key may be ``msg_iov(1)``)."""

    key: Expr
    value: Expr


@dataclass(frozen=True, slots=True)
class Call:
    """``htons(8080)``, ``msg_iov(1)``."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class OrExpr:
    """``O_RDWR|O_NONBLOCK``."""

    items: tuple[Expr, ...]


Expr = int | Ellipsis_ | Name | Quoted | ListExpr | StructExpr | KeyValue | Call | OrExpr


# -- events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PacketSpec:
    """``< S. 0:10(10) ack 1 win 32792 <mss 1460,FO abcd,nop,nop>`` (flags ``-``: none, "").

    ``options`` None means ``<...>`` (any options); an absent list is an empty tuple.
    ``window`` None means no ``win`` (outbound: not checked). ``ecn`` is the IP ECN field of
    a ``[noecn]``, ``[ect0]``, ``[ect1]`` or ``[ce]`` before the flags (one of wire's
    ``ECN_*``; outbound ``[ect01]``, :data:`ECT01`, is either ECT), None without one (inbound:
    Not-ECT; outbound: not checked). ``urgent`` is ``urg N``'s urgent pointer (else 0).
    """

    direction: str
    flags: str
    seq: int
    end: int
    length: int
    ack: int | None
    window: int | None
    options: tuple[TcpOption, ...] | None
    ecn: int | None = None
    urgent: int = 0


@dataclass(frozen=True, slots=True)
class IcmpSpec:
    """``< icmp unreachable frag_needed mtu 800 [0:1000(1000)]``: an ICMP error about the
    socket under test, as packetdrill's ``icmp_packet_spec``.

    ``type_`` and ``code`` are packetdrill's names (or ``type_N``/``code_N``), resolved for
    the run's address family; ``code`` None means 0. ``seq`` is the echoed TCP sequence number
    (script space, relative to the stack's ISN) and ``length`` the echoed payload length.
    """

    type_: str
    code: str | None
    mtu: int | None
    seq: int
    length: int


@dataclass(frozen=True, slots=True)
class Syscall:
    """``name(args) = result [ERRNO] [(text)]``."""

    name: str
    args: tuple[Expr, ...]
    result: int | Ellipsis_
    errno: str | None


@dataclass(frozen=True, slots=True)
class Shell:
    """A backtick command."""

    command: str


@dataclass(frozen=True, slots=True)
class Python:
    """A ``%{ ... }%`` block."""

    code: str


Action = PacketSpec | IcmpSpec | Syscall | Shell | Python


@dataclass(frozen=True, slots=True)
class Event:
    line: int
    time: EventTime
    action: Action


@dataclass(slots=True)
class Script:
    path: str
    options: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


# -- lexing helpers ------------------------------------------------------------------------------

_NUM = r"(?:\d+(?:\.(?!\.)\d*)?|\.\d+)"
_TIME = re.compile(
    rf"(?P<any>\*)|(?P<t1>\+?{_NUM})"
    rf"(?:\s*~\s*(?P<t2>\+?{_NUM}))?"
    rf"(?:\s*\.\.\.\s*(?P<t3>\+?{_NUM}))?"
)
_PACKET = re.compile(
    r"(?:(?:\[(?P<ecn>\w+)\]|\((?P<ecn2>\w+)\))\s*)?"
    r"(?P<flags>[SFRPEWU.]+|-)\s+(?P<seq>\d+):(?P<end>\d+)\((?P<len>\d+)\)"
    r"(?:\s+ack\s+(?P<ack>\d+))?(?:\s+win\s+(?P<win>\d+))?(?:\s+urg\s+(?P<urg>\d+))?"
    r"(?:\s*<(?P<opts>[^>]*)>)?\s*$"
)
#: packetdrill's IP ECN names (``ip_ecn``), and ``ect01``: outbound ECT(0) or ECT(1).
ECT01 = -1
ECN_NAMES = {"noecn": ECN_NOT_ECT, "ect0": ECN_ECT_0, "ect1": ECN_ECT_1, "ce": ECN_CE}
_TOKEN = re.compile(
    r"\s*(?:(?P<ell>\.\.\.)|(?P<num>-?(?:0x[0-9a-fA-F]+|\d+))|(?P<name>[A-Za-z_]\w*)"
    r'|(?P<str>"(?:[^"\\]|\\.)*")|(?P<p>[()\[\]{},=|]))'
)
_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")
_RESULT = re.compile(
    r"=\s*(?:(?P<ell>\.\.\.)|(?P<num>-?(?:0x[0-9a-fA-F]+|\d+)))"
    r"(?:\s+(?P<errno>[A-Z][A-Z0-9_]*))?(?:\s*\((?P<text>[^)]*)\))?\s*$"
)


def _strip_comments(text: str) -> str:
    """``//`` and ``/* */`` comments become spaces (newlines kept, so lines keep their numbers).

    Quoted strings, backtick commands and ``%{ }%`` blocks are left alone.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "`":
            j = text.find("`", i + 1)
            j = n if j < 0 else j
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("%{", i):
            j = text.find("}%", i + 2)
            j = n if j < 0 else j + 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _decode_c_string(body: str) -> bytes:
    return body.encode("latin-1").decode("unicode_escape").encode("latin-1")


class _Cursor:
    """Parses the argument list of one system call."""

    def __init__(self, text: str, path: str, line: int) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ScriptSyntaxError(path, line, f"cannot parse {text[pos:].strip()!r}")
            kind = m.lastgroup
            assert kind is not None
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0
        self.path, self.line = path, line

    def error(self, message: str) -> ScriptSyntaxError:
        return ScriptSyntaxError(self.path, self.line, message)

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of the system call")
        if value is not None and tok[1] != value:
            raise self.error(f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def expr_list(self, close: str) -> tuple[Expr, ...]:
        items: list[Expr] = []
        if self.peek() == ("p", close):
            self.take()
            return ()
        while True:
            items.append(self.member())
            _, value = self.take()
            if value == close:
                return tuple(items)
            if value != ",":
                raise self.error(f"expected ',' or {close!r}, found {value!r}")

    def member(self) -> Expr:
        value = self.expr()
        if self.peek() == ("p", "="):
            self.take()
            return KeyValue(value, self.expr())
        return value

    def expr(self) -> Expr:
        items = [self.atom()]
        while self.peek() == ("p", "|"):
            self.take()
            items.append(self.atom())
        return items[0] if len(items) == 1 else OrExpr(tuple(items))

    def atom(self) -> Expr:
        kind, value = self.take()
        if kind == "ell":
            return ELLIPSIS
        if kind == "num":
            return int(value, 0)
        if kind == "str":
            return Quoted(_decode_c_string(value[1:-1]))
        if kind == "name":
            if self.peek() == ("p", "("):
                self.take()
                return Call(value, self.expr_list(")"))
            return Name(value)
        if value == "[":
            return ListExpr(self.expr_list("]"))
        if value == "{":
            return StructExpr(self.expr_list("}"))
        raise self.error(f"unexpected {value!r}")


def parse_options(text: str, path: str, line: int) -> tuple[TcpOption, ...] | None:
    """A packetdrill option list (without the angle brackets); None for ``...``."""
    text = text.strip()
    if text == "...":
        return None
    options: list[TcpOption] = []
    for raw in text.split(","):
        words = raw.split()
        if not words:
            continue
        kind, args = words[0], words[1:]
        try:
            options.append(_option(kind, args))
        except (ValueError, IndexError) as exc:
            raise ScriptSyntaxError(path, line, f"bad TCP option {raw.strip()!r}: {exc}") from None
    return tuple(options)


def _option(kind: str, args: list[str]) -> TcpOption:
    if kind == "nop" and not args:
        return Nop()
    if kind == "eol" and not args:
        return Eol()
    if kind == "sackOK" and not args:
        return SackPermitted()
    if kind == "mss" and len(args) == 1:
        return Mss(int(args[0], 0))
    if kind == "wscale" and len(args) == 1:
        return WindowScale(int(args[0], 0))
    if kind == "TS" and len(args) == 4 and args[0] == "val" and args[2] == "ecr":
        return Timestamps(int(args[1], 0), int(args[3], 0))
    if kind == "sack" and args:
        blocks = tuple((int(a, 0), int(b, 0)) for a, b in (x.split(":") for x in args))
        return Sack(blocks)
    if kind in ("FO", "FOEXP") and len(args) <= 1:
        return FastOpen(bytes.fromhex(args[0]) if args else b"", kind == "FOEXP")
    if kind == "md5" and len(args) == 1:
        # packetdrill's new_md5_option: up to 16 bytes (fewer make an option of that length)
        digest = bytes.fromhex(args[0])
        if len(digest) > TCP_MD5_DIGEST_LEN:
            raise ValueError("TCP MD5 digest longer than 16 bytes")
        if len(digest) == TCP_MD5_DIGEST_LEN:
            return Md5Sig(digest)
        return UnknownOption(TCPOPT_MD5SIG, digest)
    raise ValueError("unknown option or wrong arguments")


def _parse_time(m: re.Match[str]) -> EventTime:
    if m.group("any"):
        return EventTime(TimeKind.ANY)
    t1 = m.group("t1")
    kind = TimeKind.RELATIVE if t1.startswith("+") else TimeKind.ABSOLUTE
    start = float(t1.lstrip("+"))
    end_text = m.group("t2") or m.group("t3")
    if end_text is None:
        return EventTime(kind, start)
    end_relative = end_text.startswith("+") or (
        m.group("t3") is not None and kind is TimeKind.RELATIVE
    )
    return EventTime(
        kind,
        start,
        float(end_text.lstrip("+")),
        end_relative,
        blocking=m.group("t3") is not None,
    )


_ICMP = re.compile(
    r"icmp\s+(?P<type>[A-Za-z_]\w*)(?:\s+(?!mtu\b)(?P<code>[A-Za-z_]\w*))?"
    r"(?:\s+mtu\s+(?P<mtu>\d+))?"
    r"(?:\s*\[\s*(?P<seq>\d+):(?P<end>\d+)\((?P<len>\d+)\)\s*\])?\s*$"
)


def parse_icmp(direction: str, text: str, path: str, line: int) -> IcmpSpec:
    """``icmp TYPE [CODE] [mtu N] [[SEQ:END(LEN)]]`` after the direction."""
    m = _ICMP.match(text.strip())
    if m is None:
        raise ScriptSyntaxError(path, line, f"cannot parse ICMP packet {text.strip()!r}")
    if direction != "<":
        raise ScriptSyntaxError(path, line, "the runner injects ICMP packets; it expects none")
    seq = length = 0
    if m["seq"] is not None:
        seq, end, length = int(m["seq"]), int(m["end"]), int(m["len"])
        if (end - seq) & 0xFFFFFFFF != length:
            raise ScriptSyntaxError(path, line, f"packet {seq}:{end} does not hold {length} bytes")
    mtu = int(m["mtu"]) if m["mtu"] is not None else None
    return IcmpSpec(m["type"], m["code"], mtu, seq, length)


def parse_packet(direction: str, text: str, path: str, line: int) -> PacketSpec:
    m = _PACKET.match(text.strip())
    if m is None:
        raise ScriptSyntaxError(path, line, f"cannot parse packet {text.strip()!r}")
    seq, end, length = int(m["seq"]), int(m["end"]), int(m["len"])
    if (end - seq) & 0xFFFFFFFF != length:
        raise ScriptSyntaxError(path, line, f"packet {seq}:{end} does not hold {length} bytes")
    opts = m["opts"]
    options = () if opts is None else parse_options(opts, path, line)
    if options is None and direction == "<":
        raise ScriptSyntaxError(path, line, "an inbound packet cannot use <...> options")
    ecn_name = m["ecn"] or m["ecn2"]
    ecn: int | None = None
    if ecn_name is not None:
        if ecn_name == "ect01" and direction == ">":
            ecn = ECT01
        elif ecn_name in ECN_NAMES:
            ecn = ECN_NAMES[ecn_name]
        else:
            raise ScriptSyntaxError(path, line, f"unknown IP ECN field [{ecn_name}]")
    urgent = int(m["urg"]) if m["urg"] is not None else 0
    if urgent >> 16:
        raise ScriptSyntaxError(path, line, "urg_ptr value out of range")
    return PacketSpec(
        direction,
        "" if m["flags"] == "-" else m["flags"],  # "-": a segment with no flags at all
        seq,
        end,
        length,
        int(m["ack"]) if m["ack"] is not None else None,
        int(m["win"]) if m["win"] is not None else None,
        options,
        ecn,
        urgent,
    )


def _parse_syscall(text: str, path: str, line: int) -> Syscall:
    m = _CALL.match(text)
    assert m is not None
    i = _closing_paren(text, m.end() - 1)
    if i >= len(text):
        raise ScriptSyntaxError(path, line, "unbalanced parentheses in the system call")
    args = _args(_Cursor(text[m.end() : i], path, line))
    rest = " ".join(text[i + 1 :].split())
    r = _RESULT.match(rest)
    if r is None:
        raise ScriptSyntaxError(path, line, f"expected '= RESULT' after the call, found {rest!r}")
    result: int | Ellipsis_ = ELLIPSIS if r["ell"] else int(r["num"], 0)
    return Syscall(m.group(1), args, result, r["errno"])


def _closing_paren(text: str, start: int) -> int:
    """The index of the ``)`` closing the ``(`` at ``start`` (``len(text)`` when none)."""
    depth, i, quoted = 0, start, False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def _args(cursor: _Cursor) -> tuple[Expr, ...]:
    items: list[Expr] = []
    while cursor.peek() is not None:
        items.append(cursor.member())
        if cursor.peek() is not None:
            cursor.take(",")
    return tuple(items)


def parse_script(
    text: str, path: str = "<script>", defines: Mapping[str, str] | None = None
) -> Script:
    """Parse a whole script; raises :class:`ScriptSyntaxError` with the line of the problem.

    ``defines`` are packetdrill's ``-D NAME=VALUE``: each NAME, as a whole word outside
    comments, reads as VALUE (the Linux selftests write ``FO TFO_COOKIE``).
    """
    script = Script(path)
    clean = _strip_comments(text)
    if defines:
        names = re.compile(r"\b(" + "|".join(map(re.escape, defines)) + r")\b")
        clean = names.sub(lambda m: defines[m.group(1)], clean)
    pos, n = 0, len(clean)
    line_starts = [0] + [m.end() for m in re.finditer("\n", clean)]

    def end_of_line(offset: int) -> int:
        j = clean.find("\n", offset)
        return n if j < 0 else j

    while True:
        while pos < n and clean[pos].isspace():
            pos += 1
        if pos >= n:
            break
        line = bisect.bisect_right(line_starts, pos)
        if clean.startswith("--", pos):
            eol = end_of_line(pos)
            for word in clean[pos:eol].split():  # one or more --name=value or --flag on a line
                key, sep, value = word.removeprefix("--").partition("=")
                if not word.startswith("--") or not key or (sep and not value):
                    raise ScriptSyntaxError(path, line, f"bad option {word!r}")
                script.options[key] = value
            pos = eol
            continue
        time = EventTime(TimeKind.RELATIVE, 0.0)
        if clean[pos] != "`":
            m = _TIME.match(clean, pos)
            if m is None:
                eol = end_of_line(pos)
                raise ScriptSyntaxError(
                    path, line, f"expected a time at {clean[pos:eol].strip()!r}"
                )
            time = _parse_time(m)
            pos = m.end()
            while pos < n and clean[pos] in " \t":
                pos += 1
        action: Action
        if pos < n and clean[pos] in "<>":
            eol = end_of_line(pos)
            body = clean[pos + 1 : eol]
            if body.split(None, 1)[:1] == ["icmp"]:
                action = parse_icmp(clean[pos], body, path, line)
            else:
                action = parse_packet(clean[pos], body, path, line)
            pos = eol
        elif clean.startswith("`", pos):
            j = clean.find("`", pos + 1)
            if j < 0:
                raise ScriptSyntaxError(path, line, "unterminated backtick command")
            action = Shell(clean[pos + 1 : j])
            pos = j + 1
        elif clean.startswith("%{", pos):
            j = clean.find("}%", pos + 2)
            if j < 0:
                raise ScriptSyntaxError(path, line, "unterminated %{ python block")
            action = Python(clean[pos + 2 : j])
            pos = j + 2
        elif _CALL.match(clean, pos):
            eol = end_of_line(min(_closing_paren(clean, clean.index("(", pos)), n))
            action = _parse_syscall(clean[pos:eol], path, line)
            pos = eol
        else:
            eol = end_of_line(pos)
            raise ScriptSyntaxError(path, line, f"cannot parse {clean[pos:eol].strip()!r}")
        script.events.append(Event(line, time, action))
    return script


def load_script(path: str | Path, defines: Mapping[str, str] | None = None) -> Script:
    """Read and parse a script file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScriptSyntaxError(str(p), 0, f"cannot read the script: {exc.strerror}") from None
    return parse_script(text, str(p), defines)
