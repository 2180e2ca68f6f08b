"""The package as a user gets it: the sdist carries docs and tests, and ``pip install`` of it into
a fresh venv of this Python gives the base install (socket library and command) whose optional
parts say which extra they need; the build backend asks for mypy to compile the engine
(``FASTOPEN_MYPYC=1``) and refuses that in an editable install; the engine under test is the
one ``./dev test`` says it built. Runs once per Python ``./dev test`` runs on."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from fastopen.engine import COMPILED, tcb

ROOT = Path(__file__).resolve().parents[2]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".venvs", "*.egg-info", "build", "__pycache__", ".*_cache", ".hypothesis"
)

#: pyproject.toml's build backend (backend-path _build), as a build frontend loads it
BACKEND = "import sys; sys.path.insert(0, '_build'); import fastopen_build as backend"
#: the build's environment: the default, pure-Python build, whatever this shell asks
PURE = {**os.environ, "FASTOPEN_MYPYC": "0"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist, built from a copy of the tree (the tree itself is left as it is)."""
    tree = tmp_path_factory.mktemp("tree") / "fastopen"
    shutil.copytree(ROOT, tree, ignore=IGNORED)
    out = tmp_path_factory.mktemp("dist")
    code = f"{BACKEND}; print(backend.build_sdist({str(out)!r}))"
    subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=PURE, check=True, capture_output=True
    )
    (found,) = out.glob("fastopen-*.tar.gz")
    return found


def test_the_sdist_carries_docs_tests_and_the_license(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for doc in (ROOT / "docs").glob("*.md"):
        assert f"docs/{doc.name}" in names
    assert {"LICENSE", "README.md", "tests/conftest.py", "pyproject.toml", "dev"} <= names
    assert {"setup.py", "_build/fastopen_build.py"} <= names  # the build, compiled or not
    assert not any("__pycache__" in name for name in names)


def test_pip_install_into_a_fresh_venv_gives_the_base_install(sdist: Path, tmp_path: Path) -> None:
    # the wheel pip would build from the sdist, built here with this Python's setuptools, and
    # installed by this pip into a fresh venv without pip: 3 s instead of 22 s
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    (tree,) = (tmp_path / "src").iterdir()
    code = f"{BACKEND}; print(backend.build_wheel({str(tmp_path)!r}))"
    subprocess.run(
        [sys.executable, "-c", code], cwd=tree, env=PURE, check=True, capture_output=True
    )
    (wheel,) = tmp_path.glob("fastopen-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = str(env / "bin" / "python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    help_ = subprocess.run(
        [str(env / "bin" / "fastopen"), "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in help_.stdout and "cookies" in help_.stdout
    base = subprocess.run(
        [python, "-c", "import fastopen, fastopen.runtime; print(fastopen.create_connection)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "create_connection" in base.stdout
    for module, extra in [
        ("fastopen.http.httpx_transport", "http"),
        ("fastopen.http.urllib3_pool", "http"),
        ("fastopen.kernel.dns", "dns"),
        ("fastopen.http.requests_adapter", "requests"),
        ("fastopen.http.aiohttp_connector", "aiohttp"),
        ("fastopen.http.uvicorn_server", "servers"),
        ("fastopen.http.hypercorn_server", "servers"),
    ]:
        failed = subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True, text=True, check=False
        )
        assert failed.returncode == 1
        assert "fastopen.errors.MissingExtra" in failed.stderr
        assert f"pip install 'fastopen[{extra}]'" in failed.stderr


def test_the_backend_asks_for_mypy_to_compile_and_refuses_it_editable() -> None:
    code = (
        f"{BACKEND}; print(backend.get_requires_for_build_wheel());"
        " backend.get_requires_for_build_editable()"
    )
    env = {**os.environ, "FASTOPEN_MYPYC": "1"}
    compiling = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert compiling.stdout.strip() == "['mypy>=1.10']"
    assert "RuntimeError: fastopen: FASTOPEN_MYPYC=1 with an editable install" in compiling.stderr
    env["FASTOPEN_MYPYC"] = "0"
    plain = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert plain.returncode == 0 and "mypy" not in plain.stdout, plain.stderr


def test_the_engine_is_the_one_dev_test_built() -> None:
    """./dev test names the engine of each venv (FASTOPEN_ENGINE): compiled by mypyc, its
    modules are extension modules and ``fastopen.engine.COMPILED`` says so; else Python."""
    engine = os.environ.get("FASTOPEN_ENGINE")
    if engine is None:
        pytest.skip("FASTOPEN_ENGINE is set by ./dev test, which says which engine it built")
    assert engine in {"compiled", "python"}
    extension = tcb.__file__ is not None and tcb.__file__.endswith(tuple(EXTENSION_SUFFIXES))
    assert COMPILED is extension is (engine == "compiled")
