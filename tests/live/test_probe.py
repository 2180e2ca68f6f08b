"""The probe names each middlebox of the lab, against Linux (a kernel TFO server), nginx and the
userspace server; and tells a farm with a shared key from one without."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from conftest import require_namespaces
from jsoncontract import check

from fastopen.lab.emulator import Lab
from fastopen.lab.farm import Farm
from fastopen.lab.netns import SERVER, Netns
from fastopen.lab.router import iptables
from fastopen.lab.servers import kernel_echo, nginx, userspace_echo
from fastopen.probe import Driver, KernelDriver, Probe, Result, Step, Target, UserspaceDriver, run

pytestmark = pytest.mark.live
PORT = 8080
SETTINGS = Probe(repeat=2)


@asynccontextmanager
async def linux(ns: Netns, addr: str) -> AsyncIterator[None]:
    with kernel_echo(ns, addr, PORT):
        yield


@asynccontextmanager
async def nginx_server(ns: Netns, addr: str, port: int = PORT) -> AsyncIterator[None]:
    with nginx(ns, addr, port):
        yield


@asynccontextmanager
async def userspace(ns: Netns, addr: str) -> AsyncIterator[None]:
    async with userspace_echo(ns, addr, PORT):
        yield


Server = Callable[[Netns, str], AbstractAsyncContextManager[None]]


def probe_lab(
    middleboxes: list[str],
    server: Server = linux,
    driver: str = "userspace",
    addr: str = SERVER.ipv4,
) -> Result:
    """Probe the lab's server (on ``server``) through ``middleboxes`` from the client."""
    require_namespaces()
    with Lab(middleboxes=middleboxes) as lab:
        return asyncio.run(_probe(lab.client, lab.server, addr, server, driver))


async def _probe(client: Netns, ns: Netns, addr: str, server: Server, driver: str) -> Result:
    async with server(ns, addr):
        with client.entered():  # kernel sockets are made here; the engine takes its addresses
            chosen: Driver = UserspaceDriver.here() if driver == "userspace" else KernelDriver()
            try:
                [result] = await run([Target(addr, PORT)], chosen, SETTINGS)
            finally:
                if isinstance(chosen, UserspaceDriver):
                    chosen.close()
    return result


@pytest.mark.parametrize(
    ("box", "verdict", "kind"),
    [
        ("", "tfo", 34),
        ("drop-syn-option", "syn_option_blocked", None),
        ("drop-syn-option:kinds=34", "tfo", 254),  # the A/B: the experimental kind gets through
        ("drop-syn-option:kinds=254", "tfo", 34),
        ("strip-option", "no_cookie", None),
        ("drop-syn-data", "syn_data_blocked", 34),
        ("drop-synack-option", "syn_option_blocked", None),
        ("reset-syn-data", "syn_data_blocked", 34),
        ("drop-server-data", "offline", None),
        ("syn-blackhole", "tfo", 34),
        ("cgnat:pool=3,mapping=rotate", "cookie_only", 34),
    ],
)
def test_verdict_for_each_middlebox_against_linux(box: str, verdict: str, kind: int | None) -> None:
    result = probe_lab([box] if box else [])
    assert (result.verdict.value, result.option_kind) == (verdict, kind), result.to_json()
    data = [o for o in result.outcomes if o.step is Step.DATA]
    if verdict == "tfo":
        assert result.syn_data_acked > 0 and result.ttfb_ms["tfo"] is not None
        assert all(o.syn_data_acked for o in data)
    if box == "reset-syn-data":
        assert data[0].reset
    # only a box that drops a client's SYNs after TFO fails the last plain connection
    assert result.blackhole_after_tfo is (box == "syn-blackhole")
    # a NAT that moves the client to another address each connection changes the cookie
    assert result.cookie_stable is (None if kind is None else not box.startswith("cgnat"))


@pytest.mark.parametrize(
    ("server", "box", "verdict"),
    [
        (nginx_server, "", "tfo"),
        (nginx_server, "drop-syn-data", "syn_data_blocked"),
        (userspace, "", "tfo"),
        (userspace, "strip-option", "no_cookie"),
    ],
    ids=["nginx", "nginx-drop-syn-data", "userspace", "userspace-strip-option"],
)
def test_verdict_against_nginx_and_the_userspace_server(
    server: Server, box: str, verdict: str
) -> None:
    result = probe_lab([box] if box else [], server)
    assert result.verdict.value == verdict, result.to_json()


@pytest.mark.parametrize(
    ("box", "verdict"), [("drop-syn-data", "syn_data_blocked"), ("strip-option", "no_cookie")]
)
def test_ipv6(box: str, verdict: str) -> None:
    result = probe_lab([box], addr=SERVER.ipv6)
    assert result.verdict.value == verdict, result.to_json()


@pytest.mark.parametrize(
    ("box", "verdict"), [("", "tfo"), ("drop-syn-option", "syn_option_blocked")]
)
def test_kernel_driver(box: str, verdict: str) -> None:
    result = probe_lab([box] if box else [], driver="kernel")
    assert (result.verdict.value, result.driver) == (verdict, "kernel"), result.to_json()
    assert not any(o.step is Step.REQUEST_254 for o in result.outcomes)  # kind 34 only


@pytest.mark.parametrize("shared", [True, False], ids=["shared-key", "own-keys"])
def test_farm_cookie_stability(shared: bool) -> None:
    require_namespaces()
    with Farm(servers=2, shared_key=shared, policy="round_robin") as farm, farm.serve(PORT):

        async def probe() -> Result:
            with farm.client.entered():
                driver = UserspaceDriver.here()
            try:
                [result] = await run([Target(farm.vip, PORT)], driver, SETTINGS)
            finally:
                driver.close()
            return result

        result = asyncio.run(probe())
    assert result.cookie_stable is shared, result.to_json()


def test_cli_json_and_middlebox_list(tmp_path: Path) -> None:
    require_namespaces()
    fastopen = str(Path(sys.executable).parent / "fastopen")
    listed = subprocess.run([fastopen, "lab", "middleboxes"], capture_output=True, text=True)
    assert listed.returncode == 0 and "drop-syn-data" in listed.stdout and "cgnat" in listed.stdout
    with Lab(middleboxes=["strip-option"]) as lab, kernel_echo(lab.server, SERVER.ipv4, PORT):
        out = subprocess.run(
            [fastopen, "probe", "--json", "--netns", lab.client.name, "--pcap",
             str(tmp_path / "probe.pcap"), "--repeat", "1", f"{SERVER.ipv4}:{PORT}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.splitlines()
    found = check(["probe"], json.loads(line))
    assert {k: found[k] for k in ("verdict", "option_kind", "cookie", "cookie_stable")} == {
        "verdict": "no_cookie",
        "option_kind": None,
        "cookie": None,
        "cookie_stable": None,
    }
    assert set(found["ttfb_ms"]) == {"plain", "tfo"} and found["syn_data_acked"] == 0
    assert (tmp_path / "probe.pcap").stat().st_size > 24  # more than the pcap header


def test_lab_up_with_middleboxes_and_down(tmp_path: Path) -> None:
    require_namespaces()
    fastopen = str(Path(sys.executable).parent / "fastopen")
    env = {**os.environ, "FASTOPEN_LAB_STATE": str(tmp_path / "lab.json")}
    up = subprocess.run(
        [fastopen, "lab", "up", "--middlebox", "drop-syn-data", "--middlebox", "cgnat:pool=2"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "lab.json").read_text())
    try:
        assert state["middleboxes"] == ["drop-syn-data", "cgnat:pool=2"]
        rules = subprocess.run(
            ["ip", "netns", "exec", state["router"], "iptables", "-S", "FORWARD"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert "-m u32" in rules and "-j DROP" in rules
    finally:
        down = subprocess.run(
            [fastopen, "lab", "down"], capture_output=True, text=True, env=env, timeout=60
        )
    assert down.returncode == 0, down.stderr
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert state["router"] not in listed and state["server"] not in listed


def test_many_targets_at_once_within_bounds() -> None:
    require_namespaces()
    with Lab() as lab, kernel_echo(lab.server, SERVER.ipv4, PORT):
        iptables(lab.server, ["-A", "INPUT", "-p", "tcp", "--dport", "7", "-j", "DROP"])
        targets = [Target(SERVER.ipv4, p) for p in (PORT, 9, 7, 8081)]

        async def probe() -> list[Result]:
            with lab.client.entered():
                driver = UserspaceDriver.here()
            try:
                async with nginx_server(lab.server, SERVER.ipv4, 8081):
                    settings = Probe(repeat=1, timeout=1.0, concurrency=4, rate=50)
                    return await run(targets, driver, settings)
            finally:
                driver.close()

        results = asyncio.run(probe())
    assert [r.target for r in results] == targets
    assert [r.verdict.value for r in results] == ["tfo", "offline", "offline", "tfo"]
    assert results[1].outcomes[0].reset  # a closed port answers with a reset
    assert results[2].error == "stopped at the time bound of 1 s"  # a port that never answers
