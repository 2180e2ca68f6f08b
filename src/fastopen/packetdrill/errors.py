"""Errors of the packetdrill runner: each names the script and the line it is about."""

from __future__ import annotations

from fastopen.errors import FastOpenError


class ScriptError(FastOpenError):
    """A script failed: a packet, a system call result, an assertion or a timing differed.

    ``str()`` gives packetdrill's form: ``SCRIPT:LINE: error handling packet: ...``, then the
    expected and actual packets when there are some.
    """

    def __init__(self, path: str, line: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}:{line}: {message}", hint=hint)
        self.path = path
        self.line = line
        self.detail = message


class ScriptSyntaxError(ScriptError):
    """A script the runner cannot parse, or uses something it does not support."""
