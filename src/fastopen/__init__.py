"""fastopen: TCP Fast Open (RFC 7413) for Python, end to end."""

from __future__ import annotations

from fastopen.kernel.attempts import report
from fastopen.kernel.client import create_connection
from fastopen.kernel.server import FastOpenTCPServer, ThreadingFastOpenTCPServer
from fastopen.report import TfoReport
from fastopen.streams import KernelStack, Stack, open_connection, start_server

__version__ = "0.1.0"

__all__ = [
    "FastOpenTCPServer",
    "KernelStack",
    "Stack",
    "TfoReport",
    "ThreadingFastOpenTCPServer",
    "create_connection",
    "open_connection",
    "report",
    "start_server",
]
