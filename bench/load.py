"""Loopback load test of real ``latchkey serve`` processes.

The script starts ``--instances`` N (default 1) ``latchkey serve --workers W`` processes itself
on free 127.0.0.1 ports, each with its own temporary ``LATCHKEY_DATA_DIR`` but one shared
database (``--database-url``; default a SQLite file in the temporary directory), one generated
``LATCHKEY_SECRET_KEY`` and, with ``--redis-url``, one Redis. It runs ``latchkey migrate``
once before the instances start, waits for ``/healthz`` on each, adds users with
``latchkey user add NAME --password-stdin``, and then, with one ``httpx.AsyncClient`` per
instance and bounded concurrency, runs the phases chosen with ``--phases`` (default all three),
each bounded by a request count AND a time limit. Requests go to the instances round-robin,
one request at a time, so consecutive refreshes of one chain alternate between instances.

1. ``login``   POST /auth/login, round-robin over the users (Argon2id on every request);
2. ``refresh`` POST /auth/refresh: refresh chains — each virtual client refreshes its own
               token in sequence, with the newest refresh token each time; many chains run
               in parallel;
3. ``me``      GET /auth/me with bearer access tokens (signature check + two reads).

Without the ``login`` phase the sessions the other phases need are still created by logins,
but those are not measured.

A PostgreSQL database given with ``--database-url`` is DROPPED and CREATED anew before the run
(through the server's ``postgres`` maintenance database) and dropped again at the end unless
``--keep`` is given. To protect real data the script refuses a database whose name does not
contain ``bench`` unless ``--force-reset`` is given. Redis is not flushed.

For each phase it reports requests, errors (non-2xx or transport errors), throughput and the
latency percentiles, as a Markdown table. The servers are stopped at the end, also on Ctrl-C or
an exception. All traffic goes to 127.0.0.1; proxy settings of the environment are ignored.

    .venv/bin/python bench/load.py [--users 20] [--concurrency 32] [--phase-seconds 20]
                                   [--cheap-argon2] [--workers 2] [--instances 1]
                                   [--database-url postgresql://postgres@127.0.0.1/latchkey_bench]
                                   [--redis-url redis://127.0.0.1:6379/0]
                                   [--phases login,refresh,me]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import math
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx

HOST = "127.0.0.1"
PHASES = ("login", "refresh", "me")
CHEAP_ARGON2 = {
    "LATCHKEY_ARGON2_TIME_COST": "1",
    "LATCHKEY_ARGON2_MEMORY_KIB": "8",
    "LATCHKEY_ARGON2_PARALLELISM": "1",
}


# --- results -------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, successful or not
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    error_times: list[tuple[float, str]] = field(default_factory=list)  # (offset s, what)
    started: float = 0.0
    elapsed: float = 0.0
    client_cpu: float = 0.0
    stopped_by: str = "count"

    def record(self, started: float, status: str, ok: bool) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if not ok:
            self.errors += 1
            self.error_times.append((started - self.started, status))

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1] * 1000


def table(phases: list[Phase]) -> list[str]:
    lines = [
        "| phase | requests | errors | elapsed s | throughput req/s | p50 ms | p90 ms | p99 ms "
        "| stopped by | load-generator CPU s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for phase in phases:
        rate = phase.requests / phase.elapsed if phase.elapsed else math.nan
        lines.append(
            f"| {phase.name} | {phase.requests} | {phase.errors} | {phase.elapsed:.1f} "
            f"| {rate:.1f} | {phase.percentile(50):.1f} | {phase.percentile(90):.1f} "
            f"| {phase.percentile(99):.1f} | {phase.stopped_by} | {phase.client_cpu:.1f} |"
        )
    return lines


# --- server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def latchkey_command() -> list[str]:
    script = Path(sys.executable).with_name("latchkey")
    return [str(script)] if script.exists() else [sys.executable, "-m", "latchkey"]


class Server:
    """``latchkey serve`` in its own process group, so that all its workers can be stopped."""

    def __init__(self, env: dict[str, str], workdir: Path, port: int, workers: int) -> None:
        self.env, self.workdir, self.port, self.workers = env, workdir, port, workers
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *latchkey_command(),
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                env=self.env,
                cwd=self.workdir,  # no stray .env is read
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal reaches only this script
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        pgid = process.pid  # the process group we created with start_new_session
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers that outlived the supervisor (they share its process group).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


async def wait_healthy(server: Server, client: httpx.AsyncClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no answer from /healthz after {timeout:.0f} s:\n{server.log_tail()}")


async def add_users(env: dict[str, str], workdir: Path, count: int, parallel: int) -> list[str]:
    """``latchkey user add`` per user; returns the passwords (user i is ``bench-user-i``)."""
    passwords = [secrets.token_urlsafe(18) for _ in range(count)]
    limit = asyncio.Semaphore(parallel)

    async def add(index: int) -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                *latchkey_command(),
                "user",
                "add",
                f"bench-user-{index}",
                "--password-stdin",
                "--scope",
                "read write",
                env=env,
                cwd=workdir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await process.communicate(f"{passwords[index]}\n".encode())
            if process.returncode != 0:
                raise RuntimeError(f"user add failed: {(out + err).decode(errors='replace')}")

    await asyncio.gather(*(add(i) for i in range(count)))
    return passwords


# --- phases --------------------------------------------------------------------------------


async def run_phase(
    phase: Phase,
    concurrency: int,
    max_requests: int,
    seconds: float,
    worker: Callable[[Callable[[], bool]], Awaitable[None]],
) -> None:
    """Run ``concurrency`` copies of ``worker``; ``take()`` grants one more request or says stop."""
    issued = 0
    started = phase.started = time.perf_counter()
    deadline = started + seconds
    cpu_before = time.process_time()

    def take() -> bool:
        nonlocal issued
        if issued >= max_requests:
            return False
        if time.perf_counter() >= deadline:
            phase.stopped_by = "time"
            return False
        issued += 1
        return True

    await asyncio.gather(*(worker(take) for _ in range(concurrency)))
    phase.elapsed = time.perf_counter() - started
    phase.client_cpu = time.process_time() - cpu_before


async def send(phase: Phase, request: Awaitable[httpx.Response]) -> httpx.Response | None:
    """Await one request (a coroutine not started yet) and record its latency and status."""
    started = time.perf_counter()
    try:
        response = await request
    except httpx.HTTPError as exc:
        phase.record(started, type(exc).__name__, ok=False)
        return None
    phase.record(started, str(response.status_code), ok=response.is_success)
    return response


class RoundRobin:
    """One ``httpx.AsyncClient`` per instance; each call returns the next instance's client."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._counter = itertools.count()

    def __call__(self) -> httpx.AsyncClient:
        return self.clients[next(self._counter) % len(self.clients)]


async def login_phase(
    pick: RoundRobin,
    passwords: list[str],
    args: argparse.Namespace,
    max_requests: int | None = None,
) -> tuple[Phase, list[dict[str, Any]]]:
    phase = Phase("login (POST /auth/login)")
    pairs: list[dict[str, Any]] = []
    users = itertools.cycle(range(len(passwords)))

    async def worker(take: Callable[[], bool]) -> None:
        while take():
            index = next(users)
            body = {"username": f"bench-user-{index}", "password": passwords[index]}
            response = await send(phase, pick().post("/auth/login", json=body))
            if response is not None and response.status_code == 200:
                pairs.append(response.json())

    count = args.logins if max_requests is None else max_requests
    await run_phase(phase, args.concurrency, count, args.phase_seconds, worker)
    return phase, pairs


async def refresh_phase(
    pick: RoundRobin, pairs: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[Phase, list[str]]:
    """One chain per session; ``concurrency`` chains at a time, each strictly sequential."""
    phase = Phase("refresh chains (POST /auth/refresh)")
    chains = list(range(min(len(pairs), args.chains)))
    current = {i: pairs[i]["refresh_token"] for i in chains}
    access = {i: pairs[i]["access_token"] for i in chains}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in chains:
        queue.put_nowait(i)
    per_chain = max(1, math.ceil(args.refreshes / max(1, len(chains))))

    async def worker(take: Callable[[], bool]) -> None:
        while not queue.empty():
            chain = queue.get_nowait()
            for _ in range(per_chain):
                if not take():
                    return
                body = {"refresh_token": current[chain]}
                response = await send(phase, pick().post("/auth/refresh", json=body))
                if response is None or response.status_code != 200:
                    break  # the chain is broken; do not replay its token
                pair = response.json()
                current[chain], access[chain] = pair["refresh_token"], pair["access_token"]

    await run_phase(
        phase, min(args.concurrency, len(chains)), args.refreshes, args.phase_seconds, worker
    )
    return phase, list(access.values()) + [p["access_token"] for p in pairs[len(chains) :]]


async def me_phase(pick: RoundRobin, tokens: list[str], args: argparse.Namespace) -> Phase:
    phase = Phase("me (GET /auth/me, bearer)")
    headers = itertools.cycle([{"Authorization": f"Bearer {token}"} for token in tokens])

    async def worker(take: Callable[[], bool]) -> None:
        while take():
            auth = next(headers)
            await send(phase, pick().get("/auth/me", headers=auth))

    await run_phase(phase, args.concurrency, args.me_requests, args.phase_seconds, worker)
    return phase


# --- main ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_state() -> str:
    """The git revision of the checkout benchmarked, and whether src/ has local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"git {head}" + (
        f" + {len(dirty)} changed file(s) in src/" if dirty else " (src/ clean)"
    )


def loadavg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


async def bench(
    args: argparse.Namespace, servers: list[Server], env: dict[str, str], workdir: Path
) -> list[Phase]:
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{HOST}:{server.port}",
                    limits=limits,
                    timeout=httpx.Timeout(60.0),
                    trust_env=False,  # never a proxy: loopback only
                )
            )
            for server in servers
        ]
        for server, client in zip(servers, clients, strict=True):
            await wait_healthy(server, client, timeout=60)
        ports = ", ".join(str(server.port) for server in servers)
        print(f"servers up on {HOST}:{ports}; adding {args.users} users", file=sys.stderr)
        started = time.perf_counter()
        passwords = await add_users(env, workdir, args.users, parallel=2)
        print(f"users added in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        pick = RoundRobin(clients)

        phases = []
        if "login" in args.phases:
            login, pairs = await login_phase(pick, passwords, args)
            phases.append(login)
            print(f"login phase: {login.requests} requests", file=sys.stderr)
        else:  # sessions for the other phases, not measured
            login, pairs = await login_phase(pick, passwords, args, max_requests=args.chains)
            print(f"{len(pairs)} sessions created (login not measured)", file=sys.stderr)
        if not pairs:
            logs = "\n".join(server.log_tail() for server in servers)
            raise RuntimeError(f"no login succeeded: {login.statuses}\n{logs}")
        tokens = [pair["access_token"] for pair in pairs]
        if "refresh" in args.phases:
            refresh, tokens = await refresh_phase(pick, pairs, args)
            phases.append(refresh)
            print(f"refresh phase: {refresh.requests} requests", file=sys.stderr)
        if "me" in args.phases:
            me = await me_phase(pick, tokens, args)
            phases.append(me)
            print(f"me phase: {me.requests} requests", file=sys.stderr)
        return phases


# --- database ------------------------------------------------------------------------------


def is_postgresql(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://"))


def redact(url: str) -> str:
    """The URL without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def postgres_names(url: str) -> tuple[str, str]:
    """(DSN of the server's ``postgres`` maintenance database, name of the database in ``url``)."""
    parts = urlsplit("postgresql://" + url.split("://", 1)[1])
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise SystemExit("--database-url: name the database, e.g. postgresql://…/latchkey_bench")
    return urlunsplit(parts._replace(path="/postgres")), name


async def recreate_postgres(url: str, *, create: bool) -> None:
    """DROP the database named in ``url`` (closing its connections); CREATE it if ``create``."""
    import asyncpg  # type: ignore[import-untyped]  # a dependency of the PostgreSQL store

    maintenance, name = postgres_names(url)
    quoted = '"' + name.replace('"', '""') + '"'
    connection = await asyncpg.connect(maintenance)
    try:
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        if create:
            await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()


def migrate(env: dict[str, str], workdir: Path) -> None:
    """``latchkey migrate`` once, before any instance starts (schema and signing key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [*latchkey_command(), "migrate"],
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"latchkey migrate failed:\n{result.stdout}{result.stderr}")


# --- main ----------------------------------------------------------------------------------


def parse_phases(text: str) -> list[str]:
    phases = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in phases if name not in PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(PHASES)}, got {text!r}"
        )
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users to create (default 20)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per instance (2)")
    parser.add_argument(
        "--instances", type=int, default=1, help="latchkey serve processes, round-robin (1)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="LATCHKEY_DATABASE_URL shared by all instances (default: SQLite in the temp dir); "
        "a PostgreSQL database is dropped and created anew",
    )
    parser.add_argument(
        "--force-reset",
        action="store_true",
        help="allow dropping a PostgreSQL database whose name does not contain 'bench'",
    )
    parser.add_argument("--redis-url", default=None, help="LATCHKEY_REDIS_URL (default: none)")
    parser.add_argument(
        "--phases",
        type=parse_phases,
        default=list(PHASES),
        help="comma-separated phases to measure, in this order: login,refresh,me (all)",
    )
    parser.add_argument("--phase-seconds", type=float, default=20.0, help="time cap per phase")
    parser.add_argument("--logins", type=int, default=400, help="max logins (default 400)")
    parser.add_argument(
        "--chains", type=int, default=None, help="refresh chains (default: --concurrency)"
    )
    parser.add_argument("--refreshes", type=int, default=4000, help="max refreshes (4000)")
    parser.add_argument("--me-requests", type=int, default=10000, help="max /auth/me (10000)")
    parser.add_argument(
        "--cheap-argon2",
        action="store_true",
        help="Argon2id t=1, m=8 KiB, p=1 instead of the defaults (t=3, m=64 MiB, p=4)",
    )
    parser.add_argument("--signing-alg", choices=["RS256", "ES256", "EdDSA"], default="RS256")
    parser.add_argument("--log-level", default="warning", help="server log level (warning)")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (and a PostgreSQL database)",
    )
    args = parser.parse_args(argv)
    if args.chains is None:
        args.chains = args.concurrency
    if args.instances < 1 or args.workers < 1:
        parser.error("--instances and --workers must be at least 1")
    postgres = args.database_url is not None and is_postgresql(args.database_url)
    if postgres:
        _, db_name = postgres_names(args.database_url)
        if "bench" not in db_name and not args.force_reset:
            parser.error(
                f"--database-url: the database {db_name!r} would be dropped; use a database "
                "whose name contains 'bench' or give --force-reset"
            )

    workdir = Path(tempfile.mkdtemp(prefix="latchkey-load-"))
    ports = [free_port() for _ in range(args.instances)]
    while len(set(ports)) < len(ports):  # the kernel may hand out a port twice
        ports = [free_port() for _ in range(args.instances)]
    database_url = args.database_url or f"sqlite:///{workdir / 'db' / 'latchkey.db'}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LATCHKEY_") and not key.lower().endswith("_proxy")
    }
    # The server's own temporary files (e.g. the Prometheus multiprocess directory of
    # `serve --workers N`) go under the work directory, so they are removed with it.
    (workdir / "tmp").mkdir()
    env.update(
        TMPDIR=str(workdir / "tmp"),
        LATCHKEY_DATA_DIR=str(workdir / "setup" / "data"),
        LATCHKEY_DATABASE_URL=database_url,
        # One secret for all: instances share the signing keys sealed in the database and
        # must accept each other's refresh tokens. Base64url of 32 random bytes.
        LATCHKEY_SECRET_KEY=base64.urlsafe_b64encode(secrets.token_bytes(32))
        .rstrip(b"=")
        .decode("ascii"),
        LATCHKEY_ISSUER=f"http://{HOST}:{ports[0]}",  # the same issuer behind any instance
        LATCHKEY_SIGNING_ALG=args.signing_alg,
        LATCHKEY_LOG_LEVEL=args.log_level,
    )
    if args.redis_url:
        env["LATCHKEY_REDIS_URL"] = args.redis_url
    if args.cheap_argon2:
        env.update(CHEAP_ARGON2)
    servers = []
    for index, port in enumerate(ports):
        instance_dir = workdir / f"instance-{index}"
        servers.append(
            Server(
                {**env, "LATCHKEY_DATA_DIR": str(instance_dir / "data")},
                instance_dir,
                port,
                args.workers,
            )
        )

    print("## Load test: latchkey serve on loopback\n")
    print(f"- date (UTC): {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M:%S')}")
    print(
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average at start: {loadavg()}"
    )
    print(
        f"- Python {platform.python_version()}, latchkey {version('latchkey')}, "
        f"uvicorn {version('uvicorn')}, httpx {version('httpx')}, "
        f"cryptography {version('cryptography')}, argon2-cffi {version('argon2-cffi')}"
    )
    argon = (
        "t=1, m=8 KiB, p=1 (--cheap-argon2)" if args.cheap_argon2 else "defaults t=3, m=64 MiB, p=4"
    )
    database = (
        f"PostgreSQL {redact(database_url)} (dropped and created anew)"
        if postgres
        else (f"SQLite {database_url}" if args.database_url else "SQLite in a temp dir")
    )
    redis = f", Redis {redact(args.redis_url)}" if args.redis_url else ", no Redis"
    print(
        f"- server: {args.instances} x latchkey serve --workers {args.workers}, {database}"
        f"{redis}, {args.signing_alg}, Argon2id {argon}, log level {args.log_level}"
    )
    print(
        f"- client: one httpx.AsyncClient per instance on the same machine, requests "
        f"round-robin over the instances, concurrency {args.concurrency} in total, "
        f"{args.users} users, phases {','.join(args.phases)}, caps per phase: "
        f"{args.phase_seconds:g} s and {args.logins} logins / {args.refreshes} refreshes in "
        f"{args.chains} chains / {args.me_requests} me"
    )
    print(f"- latchkey source: {source_state()}")
    print(f"- command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    try:
        if postgres:
            asyncio.run(recreate_postgres(database_url, create=True))
        migrate(env, workdir / "setup")
        for server in servers:
            server.start()
        phases = asyncio.run(bench(args, servers, env, workdir / "setup"))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in servers:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            print(f"data and server logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if postgres:
                with contextlib.suppress(Exception):
                    asyncio.run(recreate_postgres(database_url, create=False))

    print("\n".join(table(phases)))
    print()
    for phase in phases:
        if phase.errors:
            when = ", ".join(f"{what} at {offset:.2f} s" for offset, what in phase.error_times[:10])
            print(f"- {phase.name}: answers {phase.statuses}; errors: {when}")
    print(f"- load average at end: {loadavg()}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"- load generator CPU in total: {usage.ru_utime + usage.ru_stime:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
