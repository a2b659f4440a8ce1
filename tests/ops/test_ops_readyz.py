"""GET /readyz: 200 when every dependency answers, 503 with Retry-After when one does not."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from latchkey.core.errors import ServiceUnavailable
from latchkey.web import ops


class Store:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    async def ping(self) -> None:
        if self.error is not None:
            raise self.error


async def get_readyz(store: Store, **state: Any) -> httpx.Response:
    app = Starlette(routes=ops.OPS_ROUTES)
    app.state.container = SimpleNamespace(store=store)
    for name, value in state.items():
        setattr(app.state, name, value)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return await c.get("/readyz")


async def redis_ok() -> None:
    return None


async def redis_down() -> None:
    raise ConnectionError("Error 111 connecting to localhost:6379")


async def redis_hangs() -> None:
    await asyncio.Event().wait()


async def test_ready_when_the_database_answers() -> None:
    """A working store and no Redis give 200, with Redis reported as not configured."""
    response = await get_readyz(Store())

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "not configured"},
    }
    assert "retry-after" not in response.headers


@pytest.mark.parametrize("redis_ping", [None, redis_ok])
async def test_redis_is_checked_only_when_configured(redis_ping: Any) -> None:
    """A redis_ping of None counts as not configured; a working one reports ok."""
    response = await get_readyz(Store(), redis_ping=redis_ping)

    assert response.status_code == 200
    expected = "ok" if redis_ping else "not configured"
    assert response.json()["checks"]["redis"] == expected


async def test_unavailable_when_the_database_is_down() -> None:
    """A store whose ping raises ServiceUnavailable gives 503 with Retry-After: 1."""
    response = await get_readyz(Store(ServiceUnavailable()))

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "redis": "not configured"},
    }


async def test_unavailable_when_redis_fails() -> None:
    """A redis_ping that raises makes the service unready even though the database is fine."""
    response = await get_readyz(Store(), redis_ping=redis_down)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["checks"] == {"database": "ok", "redis": "unavailable"}


async def test_a_hanging_dependency_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis_ping that never returns is cut off by the check timeout and reported as such."""
    monkeypatch.setattr(ops, "CHECK_TIMEOUT", 0.05)
    response = await get_readyz(Store(), redis_ping=redis_hangs)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["checks"] == {"database": "ok", "redis": "timeout"}
