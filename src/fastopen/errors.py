"""The one error hierarchy of fastopen.

Every error a user can meet says what is wrong and, where there is something to do, what to do.
"""

from __future__ import annotations


class FastOpenError(Exception):
    """Base class of every error fastopen raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class MalformedPacket(FastOpenError, ValueError):
    """Untrusted bytes that are not a well-formed IP packet or TCP segment."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"malformed packet: {reason}")
        self.reason = reason


class KeyFormatError(FastOpenError, ValueError):
    """A TFO key in the wrong form (sysctl text, raw bytes or key file)."""


class NeedsRoot(FastOpenError, PermissionError):
    """The operation needs root (CAP_NET_ADMIN / CAP_SYS_ADMIN)."""


class KernelFeatureMissing(FastOpenError, OSError):
    """The running kernel lacks a feature the operation needs."""


class UnsafePermissions(FastOpenError, PermissionError):
    """A secret file that others can read, or a file fastopen will not trust."""


class NamespaceError(FastOpenError, OSError):
    """A network namespace could not be created, entered or removed."""


class MissingExtra(FastOpenError, ImportError):
    """A module needs an optional dependency that is not installed: the hint names the extra."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed: this part of fastopen needs the {extra!r} extra",
            hint=f"pip install 'fastopen[{extra}]'",
        )
        self.name = module
        self.extra = extra
