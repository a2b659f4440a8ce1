"""Shared fixtures: an injected clock, settings in a temp dir, the service, an ASGI client."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from latchkey.bootstrap import Container, build
from latchkey.core.clock import ManualClock
from latchkey.settings import Settings
from latchkey.web import create_app
from support import (
    CHEAP_ENV,
    POSTGRES_URL,
    TEST_SECRET,
    Cli,
    empty_postgres,
    make_settings,
    run_sync,
)

T = TypeVar("T")
T0 = 1_800_000_000.0


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> Iterator[object]:
    """Run every ``async def`` test on asyncio through anyio's plugin (marked before
    parametrisation, so ``@pytest.mark.parametrize`` keeps working)."""
    if inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)
    return (yield)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No LATCHKEY_* variable or .env of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LATCHKEY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL for this test run."""
    import asyncpg

    name = f"latchkey_test_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")

    async def create() -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        run_sync(create)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
    url = admin.rsplit("/", 1)[0] + "/" + name
    yield url

    async def drop() -> None:
        conn = await asyncpg.connect(admin, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    run_sync(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that uses the service or the app runs on both databases."""
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    if backend == "sqlite":
        return make_settings(tmp_path / "data")
    url = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return make_settings(tmp_path / "data", database_url=url, secret_key=TEST_SECRET)


@pytest.fixture
async def services(settings: Settings, clock: ManualClock) -> AsyncIterator[Container]:
    svc = build(settings, clock=clock)
    await svc.migrate()
    yield svc
    await svc.close()


@pytest.fixture
async def client(settings: Settings, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the ASGI app in-process (lifespan run)."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> dict[str, str]:
    """A user 'alice' with password 'correct horse battery staple'."""
    services: Container = client.app.state.container  # type: ignore[attr-defined]
    await services.accounts.add_user("alice", "correct horse battery staple", scope="read write")
    return {"username": "alice", "password": "correct horse battery staple"}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment of an in-process ``latchkey`` command: its data directory in the
    test's temp dir (SQLite), cheap Argon2id; the schema not made yet."""
    data = tmp_path / "data"
    monkeypatch.setenv("LATCHKEY_DATA_DIR", str(data))
    for name, value in CHEAP_ENV.items():
        monkeypatch.setenv(name, value)
    return data


@pytest.fixture
def migrated(cli_env: Path) -> Path:
    """``cli_env`` as ``latchkey migrate`` leaves it: schema and first signing key made."""
    from latchkey.cli import main

    assert main(["migrate"]) == 0
    return cli_env


@pytest.fixture
def cli(migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)
