"""A real ``latchkey serve`` and JOSE verifiers that nobody here wrote.

The servers are started with the helpers of the end-to-end tests (tests/e2e/conftest.py): a
subprocess on a free port of 127.0.0.1 with its own data directory, waited for with a bounded
readiness loop and stopped when the fixture ends. Fixtures here are module-scoped, so each
test module starts as few servers as it needs.

The Node.js verifier (node/verify.mjs, the ``jose`` package pinned in node/package-lock.json)
is installed with ``npm ci`` into node/node_modules when that is missing or out of date.
Without ``node`` or ``npm`` its tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from interop_support import (
    NODE_DIR,
    NPM_TIMEOUT,
    Latchkey,
    NodeVerifier,
    installed,
    locked,
    serve_latchkey,
)


@pytest.fixture(scope="module", params=["RS256", "ES256", "EdDSA"])
def latchkey_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Latchkey]:
    """One server per signing algorithm latchkey offers (LATCHKEY_SIGNING_ALG)."""
    with serve_latchkey(tmp_path_factory.mktemp(f"interop-{request.param}"), request.param) as lk:
        yield lk


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyJWKClient fetches with urllib, which honours *_proxy variables: the JWKS is on
    127.0.0.1 and must be fetched directly."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


# --- Node.js ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_verifier() -> NodeVerifier:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed for the Node.js jose interop tests"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set)")
        pytest.skip(message)
    started = time.monotonic()
    install_seconds = 0.0
    if installed("jose") != locked("jose"):
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, f"npm ci failed\n{result.stdout}\n{result.stderr}"
        install_seconds = time.monotonic() - started
        assert installed("jose") == locked("jose")
    return NodeVerifier(node, install_seconds)
