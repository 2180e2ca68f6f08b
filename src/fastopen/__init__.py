"""fastopen: TCP Fast Open (RFC 7413) for Python, end to end."""

from __future__ import annotations

from fastopen.kernel.attempts import report
from fastopen.kernel.client import create_connection
from fastopen.kernel.prefetch import ahas_cookie, aprefetch_cookie, has_cookie, prefetch_cookie
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
    "ahas_cookie",
    "aprefetch_cookie",
    "create_connection",
    "has_cookie",
    "open_connection",
    "prefetch_cookie",
    "report",
    "start_server",
]
