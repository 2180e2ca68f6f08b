"""``fastopen lab up/down`` and ``fastopen demo``, run as the real command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import require_namespaces
from tfo import NOBODY, default_sigint

from fastopen.cli import main
from fastopen.lab.demo import Kind, measure
from fastopen.lab.emulator import Lab, LabError
from fastopen.lab.netns import CLIENT, SERVER, Netns
from fastopen.streams import KernelStack

pytestmark = pytest.mark.live
FASTOPEN = [str(Path(sys.executable).parent / "fastopen")]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _forwarder_running(pid: int) -> bool:
    """The link forwarder ``pid`` still runs (an exited one, even unreaped, has no cmdline)."""
    try:
        return b"fastopen.lab.link" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _fastopen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FASTOPEN, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_lab_up_leaves_a_working_link_and_lab_down_removes_everything(tmp_path: Path) -> None:
    require_namespaces()
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(tmp_path / "lab.json")}
    up = _fastopen("lab", "up", "--rtt", "20ms", "--loss", "0%", "--seed", "3", env=env)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "lab.json").read_text())
    client, server, pid = state["client"], state["server"], state["forwarder"]
    try:
        assert _forwarder_running(pid)
        assert f"client namespace {client}" in up.stdout
        assert {client, server} <= _namespaces()
        assert state["config"]["delay"] == 0.01
        # The command has exited; the link still carries a TCP connection across.
        listener = subprocess.Popen(
            ["ip", "netns", "exec", server, sys.executable, "-c",
             "import socket; s = socket.create_server(('198.18.0.2', 7001)); print('ready', "
             "flush=True); c, _ = s.accept(); c.sendall(c.recv(10))"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
            echo = subprocess.run(
                ["ip", "netns", "exec", client, sys.executable, "-c",
                 f"import socket; c = socket.create_connection(({SERVER.ipv4!r}, 7001), 5); "
                 "c.sendall(b'hi'); print(c.recv(10).decode())"],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip
            assert echo.stdout.strip() == "hi"
        finally:
            listener.kill()
            listener.wait()
        again = _fastopen("lab", "up", env=env)
        assert again.returncode == 2
        assert "a lab is already up" in again.stderr
    finally:
        down = _fastopen("lab", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert f"removed {client}, {server} and the link forwarder" in down.stdout
    assert not {client, server} & _namespaces()
    assert not _forwarder_running(pid)
    assert list(tmp_path.iterdir()) == []  # no state, no forwarder log (it had nothing to say)
    assert "no lab is up" in _fastopen("lab", "down", env=env).stdout


def test_lab_up_rejects_bad_values(tmp_path: Path) -> None:
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(tmp_path / "lab.json")}
    result = _fastopen("lab", "up", "--rtt", "fast", env=env)
    assert result.returncode == 2
    assert "'fast' is not a duration" in result.stderr
    result = _fastopen("lab", "up", "--loss", "150%", env=env)
    assert result.returncode == 2
    assert "'150%' is not a percentage from 0% to 100%" in result.stderr
    for bad in ("nan", "-5", "inf", "1e300"):
        result = _fastopen("lab", "up", "--rtt", bad, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (tmp_path / "lab.json").exists()


def test_demo_runs_end_to_end(monkeypatch: pytest.MonkeyPatch) -> None:
    require_namespaces()
    made: list[str] = []  # the demo's own namespaces (other suites may run beside this one)
    make = Netns.__init__

    def recording(self: Netns, *args: Any, **kwargs: Any) -> None:
        make(self, *args, **kwargs)
        made.append(self.name)

    monkeypatch.setattr(Netns, "__init__", recording)
    result = CliRunner().invoke(main, ["demo", "--rtt", "20", "-n", "1"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    out = result.output
    for row in ("plain TCP", "TFO, first contact", "TFO with a cookie", "TFO/plain"):
        assert row in out
    assert "cookie requested" in out
    assert "request in the SYN, acked; server read it at once" in out
    assert re.search(r"TCPFastOpenActive\s*│\s*1\s*│\s*0", out)
    assert re.search(r"TCPFastOpenPassive\s*│\s*0\s*│\s*1", out)
    assert re.search(r"TCPFastOpenCookieReqd\s*│\s*0\s*│\s*1", out)
    # The ladder, drawn from the packets the link carried.
    assert re.search(r"─ SYN, FO cookie [0-9a-f]{16}, 100 bytes ─+▶", out)
    assert "◀─ SYN-ACK, acks SYN + 100 bytes" in out
    assert f"client {CLIENT.ipv4}:" in out
    assert made and not set(made) & _namespaces()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
@pytest.mark.parametrize("command", [["lab", "up"], ["lab", "down"]], ids=["lab-up", "lab-down"])
def test_clear_error_when_not_root(command: list[str], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    tmp_path.chmod(0o777)
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(tmp_path / "lab.json")}
    result = subprocess.run(
        [*NOBODY, *FASTOPEN, *command], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("fastopen: error:") and result.stderr.count("\n") == 1
    assert "root" in result.stderr
    assert "(hint: run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_demo_without_root_runs_the_engine_in_virtual_time() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    result = subprocess.run(
        [*NOBODY, *FASTOPEN, "demo", "--rtt", "50ms", "-n", "2"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "engine pair over a link in virtual time (fastopen demo needs root" in out
    assert "over a 50 ms RTT link (virtual time)" in out
    # the same table and ladder as on the lab, and exact figures: virtual time has no noise
    assert re.search(r"plain TCP\s*│\s*2\s*│\s*100\.0 ms\s*│\s*2\.00", out)
    assert re.search(r"TFO with a cookie\s*│\s*2\s*│\s*50\.0 ms\s*│\s*1\.00", out)
    assert re.search(r"TFO/plain\s*│\s*│\s*0\.50", out)
    assert "request in the SYN, acked; server read it at once" in out
    assert re.search(r"TCPFastOpenPassive\s*│\s*0\s*│\s*2", out)
    assert re.search(r"─ SYN, FO cookie [0-9a-f]{16}, 100 bytes ─+▶", out)
    assert "◀─ SYN-ACK, acks SYN + 100 bytes" in out
    assert "Every namespace" not in out  # it made none


def test_lab_down_removes_a_lab_stopped_while_it_came_up(tmp_path: Path) -> None:
    """The state `lab up` records before it makes anything names the namespaces only (no
    client, server or forwarder yet): `lab down` removes what it names and says so."""
    state = tmp_path / "lab.json"
    name = f"fo-down-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        state.write_text(json.dumps({"namespaces": [name], "forwarder": None}))
        env = {**os.environ, "FASTOPEN_LAB_STATE": str(state)}
        down = _fastopen("lab", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert down.stdout == f"lab down: removed {name}\n"  # no forwarder had started
        assert name not in _namespaces() and not state.exists()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def test_a_signal_during_lab_up_leaves_nothing_behind(tmp_path: Path) -> None:
    """SIGINT or SIGTERM the moment `lab up` has recorded the names (so while `ip netns add`
    runs), or has made one namespace, or two: whatever the command made, it removed, or recorded
    so that `lab down` removes it."""
    require_namespaces()
    state = tmp_path / "lab.json"
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(state)}
    ours: set[str] = set()  # read from the state: names are recorded before they are made

    def record() -> None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            ours.update(json.loads(state.read_text())["namespaces"])

    def made() -> int:
        record()
        return len(ours & _namespaces())

    triggers = {
        "names recorded": state.exists,
        "one namespace made": lambda: made() >= 1,
        "both made": lambda: made() >= 2,
    }
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGINT)  # each point, both signals
    for (what, reached), sig in zip(triggers.items(), signals, strict=True):
        ours.clear()
        up = subprocess.Popen(
            [*FASTOPEN, "lab", "up"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=default_sigint,
        )
        deadline = time.monotonic() + 30
        while not reached() and up.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        record()
        up.send_signal(sig)
        _, err = up.communicate(timeout=30)
        assert "Traceback" not in err, (what, sig, err)
        down = _fastopen("lab", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert ours and not ours & _namespaces(), (what, sig, ours)
    assert not state.exists()


def test_a_dead_forwarder_is_reported_at_once_and_everything_removed() -> None:
    require_namespaces()
    with Lab(rtt=0.3) as lab:
        ours = {lab.client.name, lab.server.name}
        pid = lab.forwarder_pid
        killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
        killer.start()
        try:
            # reported by the forwarder check, not by the exchange's 10 s timeout (another error)
            with pytest.raises(LabError) as info:
                asyncio.run(measure(lab, KernelStack(), [Kind.PLAIN] * 20, SERVER.ipv4))
            with pytest.raises(LabError, match="died"):
                lab.stats()  # the control channel says the same
        finally:
            killer.cancel()
    assert info.value.message == f"the lab's link forwarder (pid {pid}) died (killed by signal 9)"
    assert not _forwarder_running(pid)
    assert not ours & _namespaces()
