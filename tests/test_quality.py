"""The public surface and the code's own standards: sorted ``__all__``, ruff, mypy --strict."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import latchkey

ROOT = Path(__file__).resolve().parents[1]


def test_public_api_is_small_and_sorted() -> None:
    """``latchkey.__all__`` is sorted and every name in it exists."""
    assert latchkey.__all__ == sorted(latchkey.__all__)
    for name in latchkey.__all__:
        assert hasattr(latchkey, name), name


def test_core_imports_no_web_framework_or_database() -> None:
    """The core stays pure: importing every module of it (and so the package root) loads no
    web framework, database driver or HTTP client."""
    code = (
        "import importlib, pkgutil, sys, latchkey.core as core;"
        "names = pkgutil.iter_modules(core.__path__, 'latchkey.core.');"
        "[importlib.import_module(m.name) for m in names];"
        "bad = [m for m in ('starlette', 'sqlalchemy', 'aiosqlite', 'asyncpg', 'redis', 'httpx', "
        "'flask', 'uvicorn', 'prometheus_client') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_ruff_is_clean() -> None:
    """ruff finds nothing in the package, the tests, the examples and the benchmarks."""
    result = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "examples", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    """mypy --strict accepts the package."""
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    """import-linter keeps the architecture of pyproject.toml [tool.importlinter]: the layers
    (command line, web, wiring, services, then adapters, store and ops, then the core), a core
    that imports nothing else of the package and no I/O library, and web and command line that
    never import the store."""
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
