"""bench/compare.py's parts start and measure: latchkey and the bare Starlette peer come up,
and wrk's Lua scripts drive /me and refresh chains without an error. (No figure is checked:
the benchmark is not a timed test.)"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import servers  # noqa: E402
import wrk  # noqa: E402

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"),
]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def latchkey_service(tmp_path: Path) -> Iterator[servers.Service]:
    service = servers.latchkey("latchkey", tmp_path / "lk", 2, workers=1)
    yield service
    service.stop()


@pytest.fixture
def bare(tmp_path: Path, key_file: Path) -> Iterator[servers.Service]:
    service = servers.bare_starlette(tmp_path / "bare", key_file)
    yield service
    service.stop()


def _drive(service: servers.Service, tmp_path: Path) -> tuple[wrk.Result, wrk.Result]:
    asyncio.run(service.wait_up())
    pairs = asyncio.run(service.sessions(2))
    tokens, chains = tmp_path / "tokens.txt", tmp_path / "chains.txt"
    tokens.write_text("\n".join(p["access_token"] for p in pairs) + "\n")
    chains.write_text("\n".join(p["refresh_token"] for p in pairs) + "\n")
    url = service.urls[0]
    me = wrk.run(
        url + service.me_path,
        "me",
        connections=2,
        threads=1,
        seconds=1,
        env={"WRK_TOKENS": str(tokens)},
    )
    refresh = wrk.run(
        url + service.refresh_path,
        "refresh",
        connections=2,
        threads=2,
        seconds=1,
        env={"WRK_TOKENS": str(chains), "WRK_REFRESH_MODE": service.refresh_mode},
    )
    return me, refresh


def test_latchkey_answers_wrk_without_errors(
    latchkey_service: servers.Service, tmp_path: Path
) -> None:
    me, refresh = _drive(latchkey_service, tmp_path)
    assert me.requests > 0 and me.errors == 0
    # Each chain kept rotating: a broken chain would answer 401/400 from its second request.
    assert refresh.requests > 2 and refresh.errors == 0


def test_the_bare_peer_answers_wrk_without_errors(bare: servers.Service, tmp_path: Path) -> None:
    me, refresh = _drive(bare, tmp_path)
    assert me.requests > 0 and me.errors == 0
    assert refresh.requests > 2 and refresh.errors == 0
