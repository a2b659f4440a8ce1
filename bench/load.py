"""Loopback load test of a real ``latchkey serve`` process.

The script starts ``latchkey serve --workers 2`` itself on a free 127.0.0.1 port with a
temporary ``LATCHKEY_DATA_DIR``, waits for ``/healthz``, adds users with
``latchkey user add NAME --password-stdin``, and then, with ``httpx.AsyncClient`` and bounded
concurrency, runs three phases, each bounded by a request count AND a time limit:

1. ``login``   POST /auth/login, round-robin over the users (Argon2id on every request);
2. ``refresh`` POST /auth/refresh: refresh chains — each virtual client refreshes its own
               token in sequence, with the newest refresh token each time; many chains run
               in parallel;
3. ``me``      GET /auth/me with bearer access tokens (signature check + two reads).

For each phase it reports requests, errors (non-2xx or transport errors), throughput and the
latency percentiles, as a Markdown table. The server is stopped at the end, also on Ctrl-C or
an exception. All traffic goes to 127.0.0.1; proxy settings of the environment are ignored.

    .venv/bin/python bench/load.py [--users 20] [--concurrency 32] [--phase-seconds 20]
                                   [--cheap-argon2]
"""

from __future__ import annotations

import argparse
import asyncio
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

import httpx

HOST = "127.0.0.1"
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


async def login_phase(
    client: httpx.AsyncClient,
    passwords: list[str],
    args: argparse.Namespace,
) -> tuple[Phase, list[dict[str, Any]]]:
    phase = Phase("login (POST /auth/login)")
    pairs: list[dict[str, Any]] = []
    users = itertools.cycle(range(len(passwords)))

    async def worker(take: Callable[[], bool]) -> None:
        while take():
            index = next(users)
            body = {"username": f"bench-user-{index}", "password": passwords[index]}
            response = await send(phase, client.post("/auth/login", json=body))
            if response is not None and response.status_code == 200:
                pairs.append(response.json())

    await run_phase(phase, args.concurrency, args.logins, args.phase_seconds, worker)
    return phase, pairs


async def refresh_phase(
    client: httpx.AsyncClient, pairs: list[dict[str, Any]], args: argparse.Namespace
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
                response = await send(phase, client.post("/auth/refresh", json=body))
                if response is None or response.status_code != 200:
                    break  # the chain is broken; do not replay its token
                pair = response.json()
                current[chain], access[chain] = pair["refresh_token"], pair["access_token"]

    await run_phase(
        phase, min(args.concurrency, len(chains)), args.refreshes, args.phase_seconds, worker
    )
    return phase, list(access.values()) + [p["access_token"] for p in pairs[len(chains) :]]


async def me_phase(client: httpx.AsyncClient, tokens: list[str], args: argparse.Namespace) -> Phase:
    phase = Phase("me (GET /auth/me, bearer)")
    headers = itertools.cycle([{"Authorization": f"Bearer {token}"} for token in tokens])

    async def worker(take: Callable[[], bool]) -> None:
        while take():
            auth = next(headers)
            await send(phase, client.get("/auth/me", headers=auth))

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


async def bench(args: argparse.Namespace, server: Server, env: dict[str, str]) -> list[Phase]:
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{server.port}",
        limits=limits,
        timeout=httpx.Timeout(60.0),
        trust_env=False,  # never a proxy: loopback only
    ) as client:
        await wait_healthy(server, client, timeout=60)
        print(f"server up on {HOST}:{server.port}; adding {args.users} users", file=sys.stderr)
        started = time.perf_counter()
        passwords = await add_users(env, server.workdir, args.users, parallel=2)
        print(f"users added in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        phases = []
        login, pairs = await login_phase(client, passwords, args)
        phases.append(login)
        print(f"login phase: {login.requests} requests", file=sys.stderr)
        if not pairs:
            raise RuntimeError(f"no login succeeded: {login.statuses}\n{server.log_tail()}")
        refresh, tokens = await refresh_phase(client, pairs, args)
        phases.append(refresh)
        print(f"refresh phase: {refresh.requests} requests", file=sys.stderr)
        me = await me_phase(client, tokens, args)
        phases.append(me)
        print(f"me phase: {me.requests} requests", file=sys.stderr)
        return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users to create (default 20)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (2)")
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
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    if args.chains is None:
        args.chains = args.concurrency

    workdir = Path(tempfile.mkdtemp(prefix="latchkey-load-"))
    port = free_port()
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
        LATCHKEY_DATA_DIR=str(workdir / "data"),
        LATCHKEY_ISSUER=f"http://{HOST}:{port}",
        LATCHKEY_SIGNING_ALG=args.signing_alg,
        LATCHKEY_LOG_LEVEL=args.log_level,
    )
    if args.cheap_argon2:
        env.update(CHEAP_ARGON2)
    server = Server(env, workdir, port, args.workers)

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
    print(
        f"- server: latchkey serve --workers {args.workers}, SQLite in a temp dir, "
        f"{args.signing_alg}, Argon2id {argon}, log level {args.log_level}"
    )
    print(
        f"- client: httpx.AsyncClient on the same machine, concurrency {args.concurrency}, "
        f"{args.users} users, caps per phase: {args.phase_seconds:g} s and "
        f"{args.logins} logins / {args.refreshes} refreshes in {args.chains} chains / "
        f"{args.me_requests} me"
    )
    print(f"- latchkey source: {source_state()}")
    print(f"- command: {' '.join([os.path.basename(sys.executable), *sys.argv])}\n")

    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    try:
        server.start()
        phases = asyncio.run(bench(args, server, env))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            print(f"data and server log kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

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
