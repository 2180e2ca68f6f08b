"""The README's engine example runs as printed and says what the README says it says."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_engine_example_puts_the_second_request_in_the_syn() -> None:
    section = README.read_text().split("## The engine, sans-I/O", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    out = io.StringIO()
    namespace: dict[str, object] = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), namespace)
    assert out.getvalue().splitlines() == [
        "EINPROGRESS: Operation now in progress",
        "bytes in the SYN: 18",
    ]
    server = namespace["server"]
    assert server.counters["TCPFastOpenPassive"] == 1  # type: ignore[attr-defined]
