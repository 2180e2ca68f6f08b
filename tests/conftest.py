"""Shared fixtures. Live tests (root, network namespaces) run under CI=true and skip elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fastopen.errors import FastOpenError
from fastopen.lab.netns import Netns, check_support, enable_tfo, veth_link

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_namespaces() -> None:
    """Skip (or, under CI=true, fail) when this process cannot make network namespaces."""
    try:
        check_support()
    except FastOpenError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but namespaces are unavailable: {exc}")
        pytest.skip(f"needs root and network namespaces: {exc}")


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A fresh ``fo-`` namespace with loopback up and TFO on (client and server)."""
    require_namespaces()
    with Netns("t") as ns:
        enable_tfo(ns)
        yield ns


@pytest.fixture
def netns_pair() -> Iterator[tuple[Netns, Netns]]:
    """A client and a server namespace joined by veth (198.18.0.1/2, fd00:f0::1/2), TFO on."""
    require_namespaces()
    with Netns("c") as client, Netns("s") as server:
        veth_link(client, server)
        enable_tfo(client)
        enable_tfo(server)
        yield client, server
