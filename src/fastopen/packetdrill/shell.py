"""The backtick commands of packetdrill scripts, applied to the stack under test.

Scripts configure the stack with ``sysctl``, packetdrill's ``defaults.sh`` (google/packetdrill's
``gtests/net/common/defaults.sh`` or the Linux selftests' own) and ``set_sysctls.py``,
``ip tcp_metrics flush``, ``ip route add|change|replace PREFIX dev DEV [features
tcp_usec_ts]`` (the route feature of microsecond TS values, Linux 6.7+), the device's offloads
(``ethtool -K tun0 tso off gso off``) and its root qdisc (``tc qdisc replace dev tun0 root fq``,
``tc qdisc delete dev tun0 root``), kernel module parameters (``echo 3 >
/sys/module/tcp_cubic/parameters/hystart_detect``); and make the files a script sends (``rm -f
/tmp/NAME``, ``dd bs=N count=M if=/dev/zero of=/tmp/NAME``), which live in
:class:`ScriptFiles`, in memory: no file outside the run is touched. A :class:`Stack` applies
the rest: :class:`EngineStack` maps each onto a :class:`~fastopen.engine.Host` attribute, the
kernel backend writes the namespace's real sysctls, routes, offloads and qdisc (and refuses
module parameters, which are the machine's). Anything a stack does not know fails, so that a script
never runs under settings it did not get.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fastopen.cookies import KeyRing
from fastopen.engine import Host
from fastopen.engine.cache import IPAddress
from fastopen.engine.cc import NAMES
from fastopen.engine.socket import AF_INET, AF_INET6
from fastopen.errors import KeyFormatError

#: packetdrill's ``gtests/net/common/defaults.sh``, the part the engine has: buffers, TFO on for
#: clients and for servers without the socket option too, the selftests key, timestamps, SACK,
#: CUBIC, no slow start after idle, tail loss probes.
DEFAULTS_SH = {
    "net.ipv4.tcp_rmem": "4096 540000 15728640",
    "net.ipv4.tcp_wmem": "4096 262144 4194304",
    "net.ipv4.tcp_fastopen": "0x70403",
    "net.ipv4.tcp_fastopen_key": "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4",
    "net.ipv4.tcp_timestamps": "1",
    "net.ipv4.tcp_sack": "1",
    "net.ipv4.tcp_syn_retries": "5",
    "net.ipv4.tcp_synack_retries": "5",
    "net.ipv4.tcp_ecn": "0",
    "net.ipv4.tcp_congestion_control": "cubic",
    "net.ipv4.tcp_slow_start_after_idle": "0",
    "net.ipv4.tcp_early_retrans": "4",
    "net.ipv4.tcp_pacing_ss_ratio": "200",
    "net.ipv4.tcp_pacing_ca_ratio": "120",
    "net.ipv4.tcp_notsent_lowat": "4294967295",
}
#: The Linux selftests' own ``defaults.sh`` (tools/testing/selftests/net/packetdrill): the same
#: but TFO on for clients and servers only (0x3).
SELFTESTS_DEFAULTS_SH = DEFAULTS_SH | {"net.ipv4.tcp_fastopen": "0x3"}


def _int(attr: str) -> Callable[[Host, str], None]:
    return lambda host, value: setattr(host.settings, attr, int(value, 0))


def _flag(attr: str) -> Callable[[Host, str], None]:
    return lambda host, value: setattr(host.settings, attr, int(value, 0) != 0)


def _wmem(host: Host, value: str) -> None:
    """``tcp_wmem``: "min default max"."""
    settings = host.settings
    settings.wmem_min, settings.wmem, settings.wmem_max = (int(w, 0) for w in value.split())


def _rmem(host: Host, value: str) -> None:
    """``tcp_rmem``: "min default max" (the window scale follows the maximum)."""
    settings = host.settings
    settings.rmem_min, settings.rmem, settings.rmem_max = (int(w, 0) for w in value.split())


def _keys(host: Host, value: str) -> None:
    host.settings.keys = KeyRing.from_text(value)


def _blackhole(host: Host, value: str) -> None:
    host.settings.blackhole_timeout = float(int(value, 0))


def _congestion(host: Host, value: str) -> None:
    """``tcp_congestion_control``: an algorithm the engine has (Linux: ENOENT for another)."""
    if value not in NAMES:
        raise ValueError(value)
    host.settings.congestion_control = value


def _ecn(host: Host, value: str) -> None:
    """``tcp_ecn``: 0 off, 1 ask and accept, 2 accept (AccECN's 3 to 5 the engine has not)."""
    mode = int(value, 0)
    if mode not in (0, 1, 2):
        raise ValueError(value)
    host.settings.ecn = mode


def _ranged(attr: str, low: int, high: int) -> Callable[[Host, str], None]:
    """An int sysctl that Linux takes only from ``low`` to ``high`` (its extra1 and extra2:
    EINVAL past them)."""

    def apply(host: Host, value: str) -> None:
        number = int(value, 0)
        if not low <= number <= high:
            raise ValueError(value)
        setattr(host.settings, attr, number)

    return apply


#: The sysctls the runner applies to the engine Host.
SYSCTLS: dict[str, Callable[[Host, str], None]] = {
    "net.ipv4.tcp_fastopen": _int("tcp_fastopen"),
    "net.ipv4.tcp_fastopen_key": _keys,
    "net.ipv4.tcp_fastopen_blackhole_timeout_sec": _blackhole,
    "net.ipv4.tcp_timestamps": _flag("timestamps"),
    "net.ipv4.tcp_sack": _flag("sack"),
    "net.ipv4.tcp_window_scaling": _flag("window_scaling"),
    "net.ipv4.tcp_rmem": _rmem,
    "net.ipv4.tcp_wmem": _wmem,
    "net.ipv4.tcp_syn_retries": _int("syn_retries"),
    "net.ipv4.tcp_synack_retries": _int("synack_retries"),
    "net.core.somaxconn": _int("somaxconn"),
    "net.ipv4.tcp_ecn": _ecn,
    "net.ipv4.tcp_min_tso_segs": _int("min_tso_segs"),
    "net.ipv4.tcp_congestion_control": _congestion,
    "net.ipv4.tcp_slow_start_after_idle": _flag("slow_start_after_idle"),
    "net.ipv4.tcp_tso_win_divisor": _int("tso_win_divisor"),
    "net.ipv4.tcp_notsent_lowat": _int("notsent_lowat"),
    "net.ipv4.tcp_early_retrans": _ranged("early_retrans", 0, 4),
    "net.ipv4.tcp_pacing_ss_ratio": _ranged("pacing_ss_ratio", 0, 1000),
    "net.ipv4.tcp_pacing_ca_ratio": _ranged("pacing_ca_ratio", 0, 1000),
}


def _cubic(attr: str) -> Callable[[Host, str], None]:
    """A tcp_cubic parameter, an int as Linux param_set_int reads it (kstrtoint, base 0)."""
    return lambda host, value: setattr(host.settings.cubic, attr, int(value, 0))


#: The module parameters the runner applies to the engine Host, by module and name: the
#: writable ones of tcp_cubic the engine has (Settings.cubic).
MODULE_PARAMS: dict[tuple[str, str], Callable[[Host, str], None]] = {
    ("tcp_cubic", name): _cubic(name)
    for name in ("hystart", "hystart_detect", "hystart_low_window", "hystart_ack_delta_us")
}
#: ``echo VALUE > /sys/module/MODULE/parameters/NAME``.
MODULE_PARAM = re.compile(
    r"echo\s+(?P<value>[-+]?\w+)\s*>\s*/sys/module/(?P<module>\w+)/parameters/(?P<name>\w+)"
)
#: Knobs that change nothing the engine does, with the value for which that holds ("*": any).
IGNORED_SYSCTLS: dict[str, str] = {}
_REDIRECTIONS = (">", "&>", "2>", "1>")
#: The route features the stacks know (``ip route ... features NAME``), with their RTAX_FEATURE_*
#: bits.
ROUTE_FEATURES = {"tcp_usec_ts": 0x10}
#: The script's device (packetdrill's TUN device).
DEVICE = "tun0"
#: The offloads ``ethtool -K`` may set on it.
OFFLOADS = frozenset({"tso", "gso"})
#: The root qdiscs ``tc qdisc add|replace dev tun0 root QDISC`` may install: fq paces (Linux's
#: EDT pacing); pfifo_fast, the default, does not; ``pfifo limit 0`` drops every packet.
QDISCS = frozenset({"fq", "pfifo_fast", "pfifo limit 0"})


@dataclass(frozen=True, slots=True)
class Route:
    """``ip route add|change|replace PREFIX dev DEV [features NAME...]``, parsed."""

    verb: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    device: str
    features: frozenset[str]

    @property
    def usec_ts(self) -> bool:
        return "tcp_usec_ts" in self.features

    @property
    def feature_bits(self) -> int:
        """The RTAX_FEATURES metric of the features."""
        return sum(ROUTE_FEATURES[name] for name in self.features)


def parse_route(words: list[str]) -> Route | None:
    """The words after ``ip route``; None for anything else than the form above (a gateway, a
    metric or an unknown feature is not something the stacks are told)."""
    if len(words) < 4 or words[0] not in ("add", "change", "replace") or words[2] != "dev":
        return None
    try:
        network = ipaddress.ip_network(words[1], strict=False)
    except ValueError:
        return None
    rest = words[4:]
    if rest and rest[0] != "features":
        return None
    features = frozenset(rest[1:])
    if rest and (not features or not features <= ROUTE_FEATURES.keys()):
        return None
    return Route(words[0], network, words[3], features)


#: Where a script's files may be (``/tmp/NAME``, a plain name).
FILES_DIR = "/tmp/"


class ScriptFiles:
    """The files a script made (``dd``) and removed (``rm -f``), by path, kept in memory for
    its ``open()`` and ``sendfile()``: a run never touches the machine's file system."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    @staticmethod
    def allowed(path: str) -> bool:
        """A path a script may use: a plain name in /tmp."""
        name = path.removeprefix(FILES_DIR)
        return path.startswith(FILES_DIR) and name not in ("", ".", "..") and "/" not in name

    def rm(self, args: list[str]) -> bool:
        """``rm -f PATH...``: the files are gone (none there is no error, as with -f)."""
        if args[:1] != ["-f"] or len(args) < 2 or not all(map(self.allowed, args[1:])):
            return False
        for path in args[1:]:
            self.data.pop(path, None)
        return True

    def dd(self, args: list[str]) -> bool:
        """``dd bs=N count=M if=/dev/zero of=PATH [status=none]``: PATH holds N*M zeros."""
        operands = dict(arg.partition("=")[::2] for arg in args)
        if len(operands) != len(args) or not {"bs", "count", "if", "of"} <= operands.keys():
            return False
        if not operands.keys() <= {"bs", "count", "if", "of", "status"}:
            return False
        if operands["if"] != "/dev/zero" or operands.get("status", "none") != "none":
            return False
        size, count, path = operands["bs"], operands["count"], operands["of"]
        if not (size.isdigit() and count.isdigit() and self.allowed(path)):
            return False
        self.data[path] = bytes(int(size) * int(count))
        return True


def parse_offloads(words: list[str]) -> dict[str, bool] | None:
    """The words after ``ethtool -K``: ``tun0`` and NAME on|off pairs of :data:`OFFLOADS`; None
    for anything else."""
    if len(words) < 3 or len(words) % 2 == 0 or words[0] != DEVICE:
        return None
    features: dict[str, bool] = {}
    for name, value in zip(words[1::2], words[2::2], strict=True):
        if name not in OFFLOADS or value not in ("on", "off"):
            return None
        features[name] = value == "on"
    return features


def parse_qdisc(words: list[str]) -> str | None:
    """The words after ``tc qdisc``: the root qdisc of tun0 they install (``add|replace dev
    tun0 root QDISC``, one of :data:`QDISCS` with its parameters), or ``pfifo_fast`` for
    ``delete dev tun0 root`` (the device's default again); None for anything else (a child
    qdisc, other parameters)."""
    if words[1:4] != ["dev", DEVICE, "root"]:
        return None
    if words[0] == "delete" and len(words) == 4:
        return "pfifo_fast"
    qdisc = " ".join(words[4:])
    if words[0] in ("add", "replace") and qdisc in QDISCS:
        return qdisc
    return None


class Stack(Protocol):
    """What the shell commands act on."""

    def sysctl(self, name: str, value: str) -> bool:
        """Set sysctl ``name`` (dotted form); False when unknown or refused."""
        ...

    def flush_metrics(self) -> None:
        """Forget the cached client cookies (``ip tcp_metrics flush``)."""
        ...

    def counters(self) -> dict[str, int]:
        """The stack's counters by nstat's names (``TcpExtOutOfWindowIcmps``, ``TcpInSegs``)."""
        ...

    def route(self, route: Route) -> bool:
        """Set the route (its features); False when refused."""
        ...

    def proc_net_tcp(self, version: int) -> list[str]:
        """The lines of ``/proc/net/tcp`` (``version`` 4) or ``/proc/net/tcp6`` (6)."""
        ...

    def offload(self, features: dict[str, bool]) -> bool:
        """Turn the device's offloads on or off (``ethtool -K tun0 ...``); False when refused."""
        ...

    def qdisc(self, name: str) -> bool:
        """Make ``name`` the device's root qdisc (``pfifo_fast``: the default); False when
        refused."""
        ...

    def module_param(self, module: str, name: str, value: str) -> bool:
        """Set a kernel module's parameter (``echo VALUE >
        /sys/module/MODULE/parameters/NAME``); False when unknown or refused."""
        ...


#: The files of the stacks' sockets a command may read, with their IP version.
PROC_NET_TCP = {"/proc/net/tcp": 4, "/proc/net/tcp6": 6}
#: Linux's TCP_* states as /proc/net/tcp writes them (``st``), by the engine's state name.
PROC_STATES = {
    "ESTABLISHED": 1,
    "SYN_SENT": 2,
    "SYN_RECEIVED": 3,
    "FIN_WAIT_1": 4,
    "FIN_WAIT_2": 5,
    "TIME_WAIT": 6,
    "CLOSED": 7,
    "CLOSE_WAIT": 8,
    "LAST_ACK": 9,
    "LISTEN": 10,
    "CLOSING": 11,
}
#: Its first line (tcp4_seq_show; tcp6_seq_show's names the same columns).
PROC_NET_TCP_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    "  timeout inode"
)


def proc_address(address: IPAddress | None, port: int, version: int) -> str:
    """An address and port as /proc/net/tcp writes them: the address's 32-bit words in the
    host's (little-endian) order, ``%08X`` each, then ``:%04X`` (any address: zeros)."""
    packed = address.packed if address is not None else bytes(4 if version == 4 else 16)
    words = "".join(
        f"{int.from_bytes(packed[i : i + 4], 'little'):08X}" for i in range(0, len(packed), 4)
    )
    return f"{words}:{port:04X}"


class EngineStack:
    """The sysctls of an engine :class:`~fastopen.engine.Host`."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def sysctl(self, name: str, value: str) -> bool:
        ignored = IGNORED_SYSCTLS.get(name)
        if ignored is not None:
            return ignored in ("*", value)
        setter = SYSCTLS.get(name)
        if setter is None:
            return False
        try:
            setter(self.host, value)
        except (ValueError, KeyFormatError):
            return False
        return True

    def flush_metrics(self) -> None:
        self.host.cookie_cache.delete()

    def counters(self) -> dict[str, int]:
        return {nstat_name(name): value for name, value in self.host.counters.items()}

    def route(self, route: Route) -> bool:
        """The engine routes everything through its one device; a route's only effect is its
        features: the prefix joins or leaves ``Settings.usec_ts_routes``."""
        settings = self.host.settings
        others = tuple(n for n in settings.usec_ts_routes if n != route.network)
        settings.usec_ts_routes = (*others, route.network) if route.usec_ts else others
        return True

    def proc_net_tcp(self, version: int) -> list[str]:
        """The host's listeners, request sockets and connections of IP ``version``, as
        tcp4_seq_show lists them (listeners first, then the established hash), with the
        columns the engine has: ``sl``, the addresses, ``st``, ``tx_queue:rx_queue`` (unsent
        and unread bytes, or a listener's accept queue); not timers, uid or inode."""
        host = self.host
        rows: list[tuple[IPAddress | None, int, IPAddress | None, int, int, int, int]] = []
        family = AF_INET if version == 4 else AF_INET6
        for (ip, port), sock in host.listeners.items():
            if sock.family == family:
                rows.append((ip, port, None, 0, 10, 0, len(sock.listen_queue.accepted)))
        for local, lport, remote, rport in host.requests:
            if local.version == version:
                rows.append((local, lport, remote, rport, 3, 0, 0))
        for (local, lport, remote, rport), conn in host.connections.items():
            if local.version == version:
                unsent = (conn.write_seq() - conn.snd_una) & 0xFFFFFFFF
                state = PROC_STATES[conn.state.name]
                rows.append((local, lport, remote, rport, state, unsent, len(conn.rcv_buf)))
        lines = [PROC_NET_TCP_HEADER]
        for i, (ip, port, rip, rport, state, tx, rx) in enumerate(rows):
            lines.append(
                f"{i:4d}: {proc_address(ip, port, version)} {proc_address(rip, rport, version)}"
                f" {state:02X} {tx:08X}:{rx:08X}"
            )
        return lines

    def offload(self, features: dict[str, bool]) -> bool:
        """The engine's device: TSO (``Settings.tso``: packets of many MSS go whole, else in
        MSS segments). GSO changes nothing for TCP, as on Linux 6.x: sk_setup_caps gives
        every TCP socket NETIF_F_GSO whatever the device has, so skbs stay many MSS and a
        device without TSO gets them cut in software, as without TSO alone."""
        settings = self.host.settings
        settings.tso = features.get("tso", settings.tso)
        return True

    def qdisc(self, name: str) -> bool:
        """fq paces the engine's transmissions (``Settings.pacing``, Linux's EDT pacing);
        pfifo_fast does not (nor does Linux without fq: its internal pacing is for the
        congestion controls that ask, which the engine's reno and cubic do not); ``pfifo limit
        0`` refuses every packet (``Settings.qdisc_drops``)."""
        settings = self.host.settings
        settings.pacing = name == "fq"
        settings.qdisc_drops = name == "pfifo limit 0"
        return True

    def module_param(self, module: str, name: str, value: str) -> bool:
        """tcp_cubic's HyStart parameters (:data:`MODULE_PARAMS`, ``Settings.cubic``)."""
        setter = MODULE_PARAMS.get((module, name))
        if setter is None:
            return False
        try:
            setter(self.host, value)
        except ValueError:
            return False
        return True


def nstat_name(name: str) -> str:
    """A counter's nstat name: the TCP MIB's as they are (``TcpInSegs``), TcpExt's prefixed
    (``TCPFastOpenActive`` is ``TcpExtTCPFastOpenActive``)."""
    if name.startswith("Tcp") and not name.startswith("TcpExt"):
        return name
    return "TcpExt" + name


class ShellCommands:
    """The backtick commands scripts use to configure the stack: ``sysctl``, packetdrill's
    ``defaults.sh`` and ``set_sysctls.py``, ``ip tcp_metrics flush``, ``ip route``; ``A || B``
    runs B when A fails or is unsupported. With ``sh_defaults`` (a real kernel), defaults.sh
    runs as /bin/sh runs it: a sysctl the kernel refuses is a warning (this machine allows no
    cubic in a namespace); the engine must know every one."""

    def __init__(
        self, stack: Stack, files: ScriptFiles | None = None, *, sh_defaults: bool = False
    ) -> None:
        self.stack = stack
        #: The script's files (``rm``, ``dd``): without them, those commands are unknown.
        self.files = files
        self.sh_defaults = sh_defaults
        #: nstat's history: the counters as the last ``nstat`` saw them.
        self.nstat_seen: dict[str, int] = {}

    def run(self, text: str) -> str | None:
        """Run the commands of one backtick block; the first that failed, or None."""
        text = text.replace("\\\n", " ")
        for line in text.replace(";", "\n").splitlines():
            for command in filter(str.strip, line.split("&&")):
                if not any(self.command(c) for c in command.split("||")):
                    return command.strip()
        return None

    def command(self, text: str) -> bool:
        param = MODULE_PARAM.fullmatch(text.strip())
        if param is not None:
            return self.stack.module_param(param["module"], param["name"], param["value"])
        stages = text.split("|")
        words = [self.words(stage) for stage in stages]
        if any(w is None for w in words):
            return False
        if len(stages) > 1:
            return self.pipeline([w for w in words if w is not None])
        first = words[0]
        assert first is not None
        return self.simple(first)

    def words(self, text: str) -> list[str] | None:
        """A command's words, redirections left out; None when it does not parse."""
        try:
            tokens = shlex.split(text, comments=True)  # "# ..." to the end: a comment
        except ValueError:
            return None
        words: list[str] = []
        skip = False
        for token in tokens:
            if skip:
                skip = False
            elif token in _REDIRECTIONS:
                skip = True  # the file name follows
            elif not token.startswith(_REDIRECTIONS):
                words.append(token)
        return words

    def pipeline(self, stages: list[list[str]]) -> bool:
        """``nstat | grep NAME`` (true when the counter NAME moved since the last nstat), or
        ``grep PATTERN /proc/net/tcp... | grep PATTERN``: true when lines come out of the last
        grep, as its exit status says (the md5 scripts look for the listener that way)."""
        first, *rest = stages
        if first[:1] == ["nstat"] and all(w in ("-a", "-n", "-s", "-z") for w in first[1:]):
            lines: list[str] | None = self.nstat(first[1:])
        else:
            lines = self.grep(first, None)
        for stage in rest:
            if lines is None:
                return False
            lines = self.grep(stage, lines)
        return bool(lines)

    def grep(self, words: list[str], lines: list[str] | None) -> list[str] | None:
        """``grep PATTERN [FILE...]`` over ``lines`` (its input) or the files, the
        ``/proc/net/tcp`` ones only, each line prefixed with its file's name when there are
        several, as grep does; a pattern is a fixed string but for ``.``. None: not a grep
        this knows."""
        args = [w for w in words[1:] if w != "-q"]  # -q: the exit status alone, the same
        if words[:1] != ["grep"] or not args or any(w.startswith("-") for w in args):
            return None
        pattern, files = args[0], args[1:]
        if any(ch in pattern for ch in "\\[]*^$"):
            return None
        if files:
            if lines is not None or not all(f in PROC_NET_TCP for f in files):
                return None
            lines = [
                f"{name}:{line}" if len(files) > 1 else line
                for name in files
                for line in self.stack.proc_net_tcp(PROC_NET_TCP[name])
            ]
        if lines is None:
            return None
        match = re.compile(re.escape(pattern).replace("\\.", "."))
        return [line for line in lines if match.search(line)]

    def nstat(self, args: list[str]) -> list[str]:
        """nstat's output lines: the counters that moved since the last run (since zero with
        -a); the run becomes the new history unless -s, and prints nothing with -n."""
        counters = self.stack.counters()
        base = {} if "-a" in args else self.nstat_seen
        moved = {name: value - base.get(name, 0) for name, value in sorted(counters.items())}
        if "-s" not in args:
            self.nstat_seen = dict(counters)
        if "-n" in args:
            return []
        return [f"{name} {delta}" for name, delta in moved.items() if delta or "-z" in args]

    def simple(self, words: list[str]) -> bool:
        """One command with its words."""
        if not words:
            return True
        program = words[0]
        if program.endswith("defaults.sh"):
            self.stack.flush_metrics()
            google = program.endswith("common/defaults.sh")
            defaults = DEFAULTS_SH if google else SELFTESTS_DEFAULTS_SH
            applied = [self.stack.sysctl(name, value) for name, value in defaults.items()]
            return self.sh_defaults or all(applied)
        if program.endswith("set_sysctls.py") or program == "sysctl":
            return all(self.assignment(w) for w in words[1:] if not w.startswith("-"))
        if words[:3] == ["ip", "tcp_metrics", "flush"]:
            self.stack.flush_metrics()
            return True
        if words[:2] == ["ip", "route"]:
            route = parse_route(words[2:])
            return route is not None and self.stack.route(route)
        if program.endswith("ethtool") and words[1:2] == ["-K"]:
            features = parse_offloads(words[2:])
            return features is not None and self.stack.offload(features)
        if program.endswith("tc") and words[1:2] == ["qdisc"]:
            qdisc = parse_qdisc(words[2:])
            return qdisc is not None and self.stack.qdisc(qdisc)
        if self.files is not None and program in ("rm", "/bin/rm"):
            return self.files.rm(words[1:])
        if self.files is not None and program in ("dd", "/bin/dd"):
            return self.files.dd(words[1:])
        if program == "nstat" and all(w in ("-a", "-n", "-s", "-z") for w in words[1:]):
            self.nstat(words[1:])
            return True
        if program == "grep":
            return bool(self.grep(words, None))
        return "sysctl_restore" in program  # packetdrill's restore script: nothing to undo

    def assignment(self, word: str) -> bool:
        """``net.ipv4.X=V`` or ``/proc/sys/net/ipv4/X=V``."""
        name, sep, value = word.partition("=")
        if not sep:
            return False
        return self.stack.sysctl(name.removeprefix("/proc/sys/").replace("/", "."), value)
