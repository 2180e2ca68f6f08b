"""Two network namespaces joined by an emulated link: TUN devices and the forwarder between them.

``with Lab(rtt=0.1, loss=0.01) as lab:`` gives a client namespace (``lab.client``, 198.18.0.1 and
fd00:f0::1) and a server namespace (``lab.server``, 198.18.0.2 and fd00:f0::2), each with a TUN
device ``tun0`` and TFO on, and a forwarder process (:mod:`fastopen.lab.link`) that carries the
packets between the two devices through the impairments. Everything goes on every exit path:
exceptions, KeyboardInterrupt, and SIGTERM (turned into SystemExit while a lab is open); and the
forwarder exits by itself when the process that made the lab dies.

``fastopen lab up`` makes a lab that outlives the command (:meth:`Lab.detach`, state in
``/run/fastopen/lab.json``, or ``$FASTOPEN_LAB_STATE``); ``fastopen lab down`` removes it
(:func:`remove_detached`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from fastopen.errors import FastOpenError, KernelFeatureMissing, NeedsRoot
from fastopen.lab import middlebox, netns
from fastopen.lab.link import LinkConfig, LinkStats
from fastopen.lab.netns import CLIENT, SERVER, Addresses, Netns
from fastopen.pcap import CapturedPacket, read_pcap
from fastopen.runtime.tun import TUN, open_tun

DEVICE = "tun0"
STATE = Path(os.environ.get("FASTOPEN_LAB_STATE", "/run/fastopen/lab.json"))
#: Where a detached forwarder (``fastopen lab up``) writes its errors.
FORWARDER_LOG = STATE.with_name("lab-forwarder.log")
#: How long to wait for the forwarder to come up, or to answer a control request.
CONTROL_TIMEOUT = 10.0


def check_support(command: str = "the lab") -> None:
    """Raise a clear error unless this process can build a lab (root, namespaces, TUN).

    ``command`` names what needs the lab in the message (``fastopen demo``, say).
    """
    try:
        netns.check_support()
    except NeedsRoot:
        raise NeedsRoot(
            f"{command} needs root: the lab is two network namespaces joined by TUN devices",
            hint=f"run it as root, e.g. sudo {command}" if command.startswith("fastopen") else None,
        ) from None
    except KernelFeatureMissing as exc:
        raise KernelFeatureMissing(f"{command} cannot run: {exc.message}", hint=exc.hint) from None
    if not TUN.exists():
        raise KernelFeatureMissing(
            f"{command} cannot run: {TUN} is missing, so there are no TUN devices",
            hint="load the tun module (modprobe tun), or in a container pass --device /dev/net/tun",
        )


def _address(ns: Netns, addr: Addresses, mtu: int) -> None:
    ns.ip("link", "set", DEVICE, "mtu", str(mtu), "up")
    ns.ip("addr", "add", f"{addr.ipv4}/24", "dev", DEVICE)
    ns.ip("-6", "addr", "add", f"{addr.ipv6}/64", "dev", DEVICE, "nodad")


@dataclass(frozen=True)
class LinkStatsPair:
    """The forwarder's counts for both directions."""

    c2s: LinkStats
    s2c: LinkStats


class Lab:
    """A client and a server namespace joined by an emulated link; a context manager.

    Keyword arguments are the :class:`~fastopen.lab.link.LinkConfig` fields (``delay`` is one-way;
    ``rtt`` sets it to half the round trip), plus ``capture`` (a pcap file of every packet the
    link carries, read back with :meth:`packets`), ``tfo`` (the ``net.ipv4.tcp_fastopen`` bits of
    both namespaces) and ``mtu``. ``middleboxes`` (names, :mod:`fastopen.lab.middlebox`) puts a
    router namespace (:attr:`router`) with their rules between the link and the server.
    """

    def __init__(
        self,
        *,
        rtt: float | None = None,
        capture: Path | None = None,
        tfo: int = 0x3,
        mtu: int = 1500,
        middleboxes: Sequence[str] = (),
        **link: Any,
    ) -> None:
        if rtt is not None:
            if "delay" in link:
                raise ValueError("give rtt or delay, not both")
            link["delay"] = rtt / 2
        self.config = LinkConfig(**link)
        self.capture = capture
        self.tfo = tfo
        self.mtu = mtu
        self.middleboxes = middlebox.parse(tuple(middleboxes))
        self._router: Netns | None = None
        self.client_addr = CLIENT
        self.server_addr = SERVER
        self._client: Netns | None = None
        self._server: Netns | None = None
        self._forwarder: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._old_sigterm: Any = None
        self._lock = threading.Lock()
        self._names: list[str] = []
        self._state: Path | None = None

    # -- the two ends ------------------------------------------------------------------------
    @property
    def client(self) -> Netns:
        if self._client is None:
            raise FastOpenError("the lab is not up")
        return self._client

    @property
    def server(self) -> Netns:
        if self._server is None:
            raise FastOpenError("the lab is not up")
        return self._server

    @property
    def router(self) -> Netns:
        """The router namespace between the link and the server (only with middleboxes)."""
        if self._router is None:
            raise FastOpenError("this lab has no router", hint="give it middleboxes")
        return self._router

    @property
    def forwarder_pid(self) -> int:
        if self._forwarder is None:
            raise FastOpenError("the lab is not up")
        return self._forwarder.pid

    # -- lifetime ----------------------------------------------------------------------------
    def start(self, *, detached: bool = False, state: Path | None = None) -> Lab:
        """Build the namespaces, the TUN devices and the forwarder (undone on any failure).

        With ``state`` (``fastopen lab up``), each namespace's name is recorded there before the
        namespace is made, so ``lab down`` finds whatever a signal interrupted.
        """
        check_support()
        self._state = state
        self._catch_sigterm()
        try:
            self._build(detached)
        except BaseException:
            self.close()
            if state is not None:
                state.unlink(missing_ok=True)
            raise
        return self

    def _new_netns(self, tag: str) -> Netns:
        """A namespace of the lab: its name chosen and recorded first, then the namespace made."""
        name = netns.new_name(tag)
        self._names.append(name)
        if self._state is not None:
            save_state({"namespaces": self._names, "forwarder": None}, self._state)
        return Netns(tag, name)

    def _build(self, detached: bool) -> None:
        self._client = self._new_netns("lab-c")
        self._server = self._new_netns("lab-s")
        if self.middleboxes:
            self._router = self._new_netns("lab-r")
        far = self._server if self._router is None else self._router
        fds: list[int] = []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control = ours  # closed by close() whatever fails below
        try:
            for ns in (self._client, far):
                fds.append(open_tun(ns, DEVICE))
            _address(self._client, CLIENT, self.mtu)
            if self._router is None:
                _address(self._server, SERVER, self.mtu)
            else:
                middlebox.insert_router(self._router, self._server, mtu=self.mtu)
                middlebox.install(self._router, self.middleboxes)
            for ns in (self._client, self._server):
                netns.enable_tfo(ns, self.tfo)
            cmd = [
                sys.executable, "-m", "fastopen.lab.link",
                "--client-fd", str(fds[0]), "--server-fd", str(fds[1]),
                "--control-fd", str(theirs.fileno()),
                "--config", json.dumps(self.config.to_dict()),
            ]  # fmt: skip
            if self.capture is not None:
                cmd += ["--capture", str(self.capture)]
            if detached:
                cmd.append("--detached")
            # A detached forwarder must not hold the command's output open after it exits.
            with contextlib.ExitStack() as stack:
                stderr = None
                if detached:
                    FORWARDER_LOG.parent.mkdir(parents=True, exist_ok=True)
                    stderr = stack.enter_context(FORWARDER_LOG.open("ab"))
                self._forwarder = subprocess.Popen(
                    cmd,
                    pass_fds=(*fds, theirs.fileno()),
                    start_new_session=True,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                )
        finally:
            theirs.close()
            for fd in fds:
                os.close(fd)
        ours.settimeout(CONTROL_TIMEOUT)
        try:
            ready = json.loads(ours.recv(65536) or b"{}")
        except TimeoutError:
            ready = {}
        if not ready.get("ready"):
            where = f"in {FORWARDER_LOG}" if detached else "above"
            raise LabError("the link forwarder did not start", hint=f"see its error {where}")

    def check_forwarder(self) -> None:
        """Raise :class:`LabError` if the forwarder is gone (killed, crashed)."""
        if self._forwarder is None:
            raise LabError("the lab is not up")
        code = self._forwarder.poll()
        if code is not None:
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            raise LabError(
                f"the lab's link forwarder (pid {self._forwarder.pid}) died ({how})",
                hint="nothing crosses the link any more; the lab was removed, run it again",
            )

    def _catch_sigterm(self) -> None:
        """While the lab is open, SIGTERM raises SystemExit so that cleanup runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, exit_on_signal)

    def close(self) -> None:
        """Stop the forwarder (its TUN devices go with it) and delete both namespaces."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._forwarder is not None:
            _stop(self._forwarder)
            self._forwarder = None
        for ns in (self._client, self._server, self._router):
            if ns is not None:
                ns.close()
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def detach(self) -> dict[str, Any]:
        """Leave the lab running after this process exits; the state ``lab down`` needs."""
        if self._forwarder is None or self._client is None or self._server is None:
            raise FastOpenError("the lab is not up")
        state = {
            "namespaces": list(self._names),
            "client": self._client.name,
            "server": self._server.name,
            "forwarder": self._forwarder.pid,
            "client_addr": asdict(CLIENT),
            "server_addr": asdict(SERVER),
            "config": self.config.to_dict(),
        }
        if self._router is not None:
            state["router"] = self._router.name
            state["middleboxes"] = [str(box) for box in self.middleboxes]
            self._router.keep()
            self._router = None
        self._client.keep()
        self._server.keep()
        if self._control is not None:
            self._control.close()  # a detached forwarder keeps running without it
            self._control = None
        self._forwarder = None
        self._client = self._server = None
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None
        return state

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the forwarder -----------------------------------------------------------------------
    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._control is None:
            raise FastOpenError("the lab is not up")
        with self._lock:
            try:
                self._control.send(json.dumps(message).encode())
                answer = self._control.recv(65536)
            except (TimeoutError, OSError):
                answer = b""
            if not answer:
                if self._forwarder is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._forwarder.wait(1)
                self.check_forwarder()
                raise LabError("the link forwarder did not answer", hint="see its error above")
            reply: dict[str, Any] = json.loads(answer)
        if not reply.get("ok"):
            raise FastOpenError(f"the link forwarder refused {message}: {reply.get('error')}")
        return reply

    def stats(self) -> LinkStatsPair:
        """What the link did so far, client to server and back."""
        stats = self._request({"op": "stats"})["stats"]
        return LinkStatsPair(LinkStats(**stats["c2s"]), LinkStats(**stats["s2c"]))

    def configure(self, **changes: Any) -> LinkConfig:
        """Change impairments of the running link (LinkConfig fields, or ``rtt``)."""
        if "rtt" in changes:
            changes["delay"] = changes.pop("rtt") / 2
        config = replace(self.config, **changes)
        self._request({"op": "set", "config": config.to_dict()})
        self.config = config
        return config

    def packets(self) -> list[CapturedPacket]:
        """Every packet the link carried so far (needs ``capture``), in the order it read them."""
        if self.capture is None:
            raise FastOpenError("this lab records no packets", hint="pass capture=<pcap path>")
        return read_pcap(self.capture)


class LabError(FastOpenError):
    """The lab could not be built, or broke while in use (its forwarder died)."""


def exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """A signal handler that ends the process as an exception does (SystemExit, code 128 +
    the signal), so that every ``finally`` and ``with`` block runs its cleanup."""
    raise SystemExit(128 + signum)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the forwarder to see its control socket close and exit; else stop it."""
    for stop in (None, proc.terminate, proc.kill):
        if stop is not None:
            with contextlib.suppress(ProcessLookupError):
                stop()
        try:
            proc.wait(timeout=2)
            return
        except subprocess.TimeoutExpired:
            continue


# -- a lab that outlives the command (fastopen lab up / down) ----------------------------------
def save_state(state: dict[str, Any], path: Path = STATE) -> None:
    """Write the state atomically: a signal never leaves half a file that ``lab down`` cannot
    read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def load_state(path: Path = STATE) -> dict[str, Any] | None:
    """The state of the detached lab, or None when there is none."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FastOpenError(
            f"cannot read the lab state {path}: {exc}", hint=f"remove {path} by hand"
        ) from None
    return state


def _is_forwarder(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"fastopen.lab.link" in cmdline


def lab_namespaces(state: dict[str, Any]) -> list[str]:
    """Every namespace the state names (recorded before it was made), ours (``fo-``) only."""
    names = [*state.get("namespaces", []), state.get("client"), state.get("server")]
    found = [str(n) for n in names if n]
    return [n for i, n in enumerate(found) if n.startswith(netns.PREFIX) and n not in found[:i]]


def remove_detached(path: Path = STATE) -> dict[str, Any] | None:
    """Remove the detached lab: its forwarder, TUN devices and namespaces; its state."""
    state = load_state(path)
    if state is None:
        return None
    pid = int(state.get("forwarder") or 0)
    if pid and _is_forwarder(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while _is_forwarder(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _is_forwarder(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for name in lab_namespaces(state):
        netns.remove(name)
    path.unlink(missing_ok=True)
    log = path.with_name(FORWARDER_LOG.name)
    if log.exists() and not log.stat().st_size:
        log.unlink()  # kept only when the forwarder had something to say
    return state
