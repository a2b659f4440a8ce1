"""Capacity at scale: the service on a PostgreSQL database with many session rows, against
the same service on the empty database, in one run; and the mass operations on a user with
100,000 sessions.

The script drops and creates the database ``--database`` on the ``--postgres`` server (and
drops it at the end), then runs the service in this process, through its ASGI app (httpx, no
network, no other process), with cheap Argon2id parameters (logins are not measured here):

1. **empty**: start-up on the schema made (build, migrate: nothing to do, load the keys,
   first read of the revocation feed), then refreshes and ``GET /auth/me`` for ``--seconds``
   each, ``--clients`` at a time;
2. **seeding**: ``--rows`` session rows in bulk (bench/seeding.py), half of them dead
   (revoked an hour ago, as the purge finds them), spread over users of 100,000 sessions;
   two real users, alice and bob, get ``--user-sessions`` live sessions each (alice's login
   below ends the 100 oldest of hers, past LATCHKEY_MAX_SESSIONS_PER_USER);
3. **big**: start-up, refreshes and ``/auth/me`` again; ``POST /auth/password`` of alice
   (one of her real sessions kept) and ``sessions revoke --user bob`` (the service beneath
   the command), each timed, with the live sessions left to each afterwards and the growth
   of this process's resident memory and deny-list;
4. **purge**: the background purge for ``--seconds``: dead rows deleted per second.

It prints a Markdown table for docs/capacity.md.

    .venv/bin/python bench/capacity.py [--rows 1000000] [--user-sessions 100000] [--seconds 10]

The 10 M-row figures of docs/capacity.md need ``--rows 10000000`` and a machine to itself
(nothing else using its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from seeding import seed_sessions  # bench/seeding.py
from sqlalchemy import func, select

from latchkey.settings import Settings
from latchkey.store.sql import SqlStore
from latchkey.store.tables import sessions, users
from latchkey.web import create_app

PASSWORD = "correct horse battery staple"
SEED_CHUNK = 100_000  # sessions per synthetic user, and per INSERT
# Tags of one length: a tag and a row number never spell another tag's sid.


def rss_mib() -> float:
    """This process's resident memory (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def recreate(server: str, name: str, *, drop_only: bool = False) -> None:
    conn = await asyncpg.connect(server, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def settings_for(url: str, data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=url,
        secret_key="YmVuY2gtc2VjcmV0LWtleS1vZi1hdC1sZWFzdC0zMi1ieXRlcw",
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
    )


class Service:
    """The app in this process and an httpx client on it."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://bench"
        )
        self._lifespan = self.app.router.lifespan_context(self.app)

    async def start(self) -> float:
        started = time.perf_counter()
        await self._lifespan.__aenter__()
        await self.container.sessions.sync_revocations()
        return time.perf_counter() - started

    @property
    def container(self) -> Any:
        return self.app.state.container

    async def close(self) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    async def login(self, username: str) -> dict[str, Any]:
        response = await self.client.post(
            "/auth/login", json={"username": username, "password": PASSWORD}
        )
        response.raise_for_status()
        pair: dict[str, Any] = response.json()
        return pair


async def rate(
    seconds: float, clients: int, work: Callable[[int], Awaitable[httpx.Response]]
) -> tuple[float, float]:
    """Requests per second and p99 latency (ms) of ``clients`` loops of ``work``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await work(index)
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code} {response.text}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return len(latencies) / elapsed, p99 * 1000


async def hot_path(service: Service, seconds: float, clients: int) -> dict[str, float]:
    """Refreshes (each client its own session's chain) and /auth/me."""
    pairs = [await service.login("carol") for _ in range(clients)]

    async def refresh(index: int) -> httpx.Response:
        response = await service.client.post(
            "/auth/refresh", json={"refresh_token": pairs[index]["refresh_token"]}
        )
        if response.status_code == 200:
            pairs[index] = response.json()
        return response

    async def me(index: int) -> httpx.Response:
        headers = {"Authorization": f"Bearer {pairs[index]['access_token']}"}
        return await service.client.get("/auth/me", headers=headers)

    refreshes, refresh_p99 = await rate(seconds, clients, refresh)
    mes, me_p99 = await rate(seconds, clients, me)
    return {"refresh": refreshes, "refresh_p99": refresh_p99, "me": mes, "me_p99": me_p99}


async def live_sessions(store: SqlStore, user_id: str) -> int:
    """The user's sessions a refresh would still rotate."""
    c = sessions.c
    statement = (
        select(func.count())
        .select_from(sessions.join(users, users.c.id == c.user_id))
        .where(c.user_id == user_id, c.epoch == users.c.epoch, c.revoked_at.is_(None))
    )
    async with store.engine.connect() as conn:
        return int((await conn.execute(statement)).scalar_one())


async def seed(url: str, rows: int, user_ids: list[str], per_user: int) -> float:
    store = SqlStore.from_url(url, timeout=3600)
    started = time.perf_counter()
    try:
        now = time.time()
        for number, user_id in enumerate(user_ids):
            async with store.engine.begin() as conn:
                await seed_sessions(conn, user_id, per_user, now=now, tag=f"{number:05x}")
        done, chunk = 0, 0
        while done < rows:
            count = min(SEED_CHUNK, rows - done)
            async with store.engine.begin() as conn:
                await seed_sessions(
                    conn, uuid.uuid4().hex, count, now=now, tag=f"f{chunk:04x}", dead_every=2
                )
            done, chunk = done + count, chunk + 1
        async with store.engine.connect() as conn:
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE sessions")
    finally:
        await store.close()
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    server = args.postgres
    url = server.rsplit("/", 1)[0] + "/" + args.database
    await recreate(server, args.database)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        settings = settings_for(url, Path(data_dir))
        try:
            service = Service(settings)  # the first start creates the schema and a key
            await service.start()
            accounts = service.container.accounts
            ids = {}
            for name in ("alice", "bob", "carol"):
                ids[name] = (await accounts.add_user(name, PASSWORD)).id
            await service.close()

            service = Service(settings)
            results["start_empty"] = await service.start()
            results["empty"] = await hot_path(service, args.seconds, args.clients)
            await service.close()

            results["seed_s"] = await seed(
                url, args.rows, [ids["alice"], ids["bob"]], args.user_sessions
            )

            service = Service(settings)
            results["start_big"] = await service.start()
            results["big"] = await hot_path(service, args.seconds, args.clients)
            container = service.container
            mine = await service.login("alice")
            rss, denied = rss_mib(), len(container.revocations.local)
            started = time.perf_counter()
            response = await service.client.post(
                "/auth/password",
                json={"current_password": PASSWORD, "new_password": PASSWORD + " anew"},
                headers={"Authorization": f"Bearer {mine['access_token']}"},
            )
            results["password_s"] = time.perf_counter() - started
            results["password_status"] = response.status_code
            started = time.perf_counter()
            results["revoked_bob"] = await container.sessions.revoke_sessions_of("bob")
            results["revoke_user_s"] = time.perf_counter() - started
            results["rss_growth_mib"] = rss_mib() - rss
            results["denylist_growth"] = len(container.revocations.local) - denied
            results["alice_live"] = await live_sessions(container.store, ids["alice"])
            results["bob_live"] = await live_sessions(container.store, ids["bob"])

            deleted, started = 0, time.perf_counter()
            while time.perf_counter() - started < args.seconds:
                deleted += await container.sessions.purge()
            results["purge_per_s"] = deleted / (time.perf_counter() - started)
            await service.close()
        finally:
            await recreate(server, args.database, drop_only=True)
    print(report(args, results))


def report(args: argparse.Namespace, r: dict[str, Any]) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    empty, big = r["empty"], r["big"]
    rows = args.rows + 2 * args.user_sessions
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC at commit {commit} on "
        f"{platform.node()} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end), "
        f"PostgreSQL, in one process (ASGI, {args.clients} clients, {args.seconds:g} s a phase).",
        "",
        f"| | empty database | {rows:,} session rows | ratio |",
        "|---|---|---|---|",
        f"| start-up (s) | {r['start_empty']:.2f} | {r['start_big']:.2f} | "
        f"{r['start_big'] / r['start_empty']:.2f}x |",
        f"| refresh (per s) | {empty['refresh']:.0f} | {big['refresh']:.0f} | "
        f"{big['refresh'] / empty['refresh']:.2f}x |",
        f"| refresh p99 (ms) | {empty['refresh_p99']:.0f} | {big['refresh_p99']:.0f} | |",
        f"| `/auth/me` (per s) | {empty['me']:.0f} | {big['me']:.0f} | "
        f"{big['me'] / empty['me']:.2f}x |",
        f"| `/auth/me` p99 (ms) | {empty['me_p99']:.0f} | {big['me_p99']:.0f} | |",
        "",
        f"| with {args.user_sessions:,} sessions of one user | |",
        "|---|---|",
        f"| seeding {rows:,} rows (s) | {r['seed_s']:.1f} |",
        f"| `POST /auth/password` (s, status) | {r['password_s']:.3f} ({r['password_status']}) |",
        f"| live sessions of that user after it | {r['alice_live']} |",
        f"| `sessions revoke --user` (s, sessions) | {r['revoke_user_s']:.3f} "
        f"({r['revoked_bob']:,}) |",
        f"| live sessions of that user after it | {r['bob_live']} |",
        f"| deny-list entries added by both | {r['denylist_growth']} |",
        f"| resident memory growth of the process (MiB) | {r['rss_growth_mib']:.1f} |",
        f"| purge while idle (dead rows per s) | {r['purge_per_s']:.0f} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="latchkey_bench_capacity")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--user-sessions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
