"""What a userspace stack hands its engine, noted on the way: a stand-in for the stack's
:class:`~fastopen.engine.Host` whose ``receive_segment`` calls ``note`` with each segment (as
the device's reads and GRO give them) before the host takes it; everything else is the host's.
The stack is Python and reads ``stack.host`` at every pass, while a compiled engine's Host (the
engine built by mypyc) takes no method replaced on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastopen.engine import Host
from fastopen.runtime import UserspaceStack
from fastopen.wire import IPAddress, TcpSegment

Note = Callable[[IPAddress, IPAddress, TcpSegment, float, int], None]


class ReceiveSpy:
    def __init__(self, host: Host, note: Note) -> None:
        self._host = host
        self._note = note

    def receive_segment(
        self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float, segs: int = 1
    ) -> None:
        self._note(src, dst, seg, now, segs)
        self._host.receive_segment(src, dst, seg, now, segs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._host, name)


def spy_on_receive(stack: UserspaceStack, note: Note) -> None:
    """From now on, ``note`` sees each segment ``stack`` hands its engine."""
    stack.host = ReceiveSpy(stack.host, note)  # type: ignore[assignment]
