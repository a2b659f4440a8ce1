"""Helpers shared by the test modules (importable as ``support``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from latchkey.bootstrap import Container
from latchkey.settings import Settings

T = TypeVar("T")

POSTGRES_URL = os.environ.get(
    "LATCHKEY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
TEST_SECRET = "dGVzdC1zZWNyZXQta2V5LW9mLWF0LWxlYXN0LTMyLWJ5dGVz"  # base64url, 32+ bytes
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
CHEAP_ENV = {f"LATCHKEY_{name.upper()}": str(value) for name, value in CHEAP_ARGON2.items()}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings in ``data_dir`` with cheap Argon2id parameters (tests only)."""
    values: dict[str, object] = {"data_dir": data_dir, **CHEAP_ARGON2, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def run_sync(coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine()).result()  # type: ignore[arg-type]


def empty_postgres(url: str) -> None:
    """Remove every row the previous test left (tables exist after the first migration)."""
    import asyncpg

    async def truncate() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
            if tables:
                names = ", ".join(f'"{row["tablename"]}"' for row in tables)
                await conn.execute(f"TRUNCATE {names}")
        finally:
            await conn.close()

    run_sync(truncate)


def services_of(client: Any) -> Container:
    """The services behind the app of an in-process client (the ``client`` fixture)."""
    services: Container = client.app.state.container
    return services


class Cli:
    """Runs ``latchkey`` in-process with no terminal on stdin (a command that would ask a
    question must refuse instead); no output may contain one of ``secrets``."""

    def __init__(self, monkeypatch: Any, capsys: Any) -> None:
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.secrets: set[str] = set()

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        from latchkey.cli import main

        self.capsys.readouterr()
        self.monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        for secret in self.secrets:
            assert secret not in out and secret not in err, argv
        return code, out, err

    def ok(self, *argv: str, stdin: str = "") -> str:
        code, out, err = self(*argv, stdin=stdin)
        assert code == 0, (argv, err)
        return out

    def fails(self, *argv: str, stdin: str = "") -> str:
        """Exit status 2 with one line ``latchkey: …`` on stderr and nothing on stdout."""
        code, out, err = self(*argv, stdin=stdin)
        assert (code, out) == (2, ""), (argv, out, err)
        assert err.startswith("latchkey: ") and err.count("\n") == 1, err
        return err
