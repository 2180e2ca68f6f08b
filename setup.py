"""The build: pure Python, or with the engine compiled by mypyc when ``FASTOPEN_MYPYC=1``.

Everything else about the package is in pyproject.toml. The compiled engine is the same source
built to C extension modules (``fastopen.engine.COMPILED`` says which one runs); the modules left
interpreted are those mypyc cannot compile as they are (events and states subclass builtins;
fuzz and link are test and lab tools), and the package's ``__init__``. The build backend,
_build/fastopen_build.py, adds mypy to the build's requirements when compiling and refuses an
editable install of it (the extension modules would shadow the edited sources).
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

INTERPRETED = {"__init__.py", "events.py", "states.py", "fuzz.py", "link.py"}


def compiled_modules() -> list[str]:
    """The engine's modules mypyc compiles, as paths from the repository root."""
    engine = Path("src/fastopen/engine")
    return sorted(str(path) for path in engine.glob("*.py") if path.name not in INTERPRETED)


def ext_modules() -> list[object]:
    wanted = os.environ.get("FASTOPEN_MYPYC", "0")
    if wanted not in {"0", "1"}:
        raise SystemExit(f"fastopen: FASTOPEN_MYPYC is {wanted!r}; set it to 1 (compile) or 0")
    if wanted == "0":
        return []
    from mypyc.build import mypycify

    # MYPYC_OPT_LEVEL (mypyc's own variable, default 3) sets the C compiler's -O
    return list(mypycify(compiled_modules(), target_dir="build/mypyc"))


setup(ext_modules=ext_modules())
