"""fastopen: TCP Fast Open (RFC 7413) for Python, end to end."""

from __future__ import annotations

__version__ = "0.1.0"
