"""fastopen's build backend: setuptools', with mypy added to the build requirements when
``FASTOPEN_MYPYC=1`` asks for the compiled engine (setup.py), and an editable install of the
compiled engine refused: its extension modules would sit beside the sources and shadow every
later edit of them."""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403  (the whole PEP 517/660 interface)

#: what compiling needs beside setuptools: mypy, which mypyc ships with
MYPYC = ["mypy>=1.10"]


def _compiling() -> bool:
    return os.environ.get("FASTOPEN_MYPYC", "0") == "1"


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    # setuptools' own would run setup.py, which needs mypyc when compiling; it adds only
    # setup_requires, and setup.py has none
    return list(MYPYC) if _compiling() else build_meta.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    if _compiling():
        raise RuntimeError(
            "fastopen: FASTOPEN_MYPYC=1 with an editable install (pip install -e): the compiled "
            "modules would shadow the sources you edit. Install it without -e, into a venv of "
            "its own (./dev test does so for the newest Python), or unset FASTOPEN_MYPYC."
        )
    return build_meta.get_requires_for_build_editable(config_settings)
