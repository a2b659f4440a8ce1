"""Login latency while Redis hangs, against Redis up, in one run (wrk).

The script starts, all on 127.0.0.1:

- a throwaway ``redis-server`` (no persistence) on a free port, that it hangs with SIGSTOP;
- two ``latchkey serve --workers 1`` instances sharing a PostgreSQL database
  ``latchkey_bench_redis`` (dropped and created anew on the ``--postgres`` server, dropped
  at the end) and that Redis (``LATCHKEY_REDIS_URL``): the login throttle asks Redis on
  every login, twice before the password check and once after;
- one ``wrk`` per instance, ``--connections`` each (1 by default: a login's own time, not
  the queue in front of it), with the ``login`` scenario of bench/wrk.py (the users in turn,
  default Argon2id parameters).

Phases of ``--seconds`` each, in this order: ``up``, ``hung`` (Redis is stopped just before
wrk starts and continued right after it ends), repeated ``--rounds`` times, then a last ``up``.
It prints each phase's logins, errors and latency (p50, p99, max, from wrk), and the ratio
of the hung phases' largest latency to the up phases' median and largest.

    .venv/bin/python bench/redis_outage.py [--seconds 5] [--rounds 3] [--connections 1]

Run it alone on the machine: nothing else should be using its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import servers  # bench/servers.py
import wrk  # bench/wrk.py

DATABASE = "latchkey_bench_redis"


class Redis:
    """A redis-server of the benchmark's own, that it may hang (SIGSTOP)."""

    def __init__(self, workdir: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is not installed")
        self.port = servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        command = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        client.close()

    def hang(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def go_on(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def measure(service: servers.Service, users: Path, args: argparse.Namespace) -> wrk.Result:
    runs = [
        wrk.Run(
            url + "/auth/login",
            "login",
            connections=args.connections,
            seconds=args.seconds,
            threads=1,
            env={"WRK_USERS": str(users)},
        )
        for url in service.urls
    ]
    return wrk.Result.combine([run.result() for run in runs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=1, help="per instance (1)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    wrk.require_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-redis-outage-"))
    pg_url = args.postgres.rsplit("/", 1)[0] + "/" + DATABASE
    asyncio.run(servers.recreate_postgres(pg_url, create=True, name=DATABASE))
    cache = Redis(workdir)
    service: servers.Service | None = None
    try:
        service = servers.latchkey(
            "latchkey", workdir / "pg", 20, database_url=pg_url, instances=2, workers=1,
            settings={"LATCHKEY_REDIS_URL": cache.url, "LATCHKEY_LOG_LEVEL": "warning"},
        )  # fmt: skip
        asyncio.run(service.wait_up())
        users = workdir / "users.tsv"
        users.write_text("".join(f"{n}\t{p}\n" for n, p in sorted(service.passwords.items())))
        print(header(args), flush=True)
        phases: list[tuple[str, wrk.Result]] = []
        for name in ["up", "hung"] * args.rounds + ["up"]:
            if name == "hung":
                cache.hang()
            try:
                result = measure(service, users, args)
            finally:
                cache.go_on()
            phases.append((name, result))
            print(
                f"{name:>4}: {result.requests:4d} logins, errors {result.errors}, p50 "
                f"{result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, max {result.max_ms:.0f} ms",
                flush=True,
            )
            time.sleep(2.0)  # the circuit closes again (a probe per second) before the next
        table(phases)
    finally:
        if service is not None:
            service.stop()
        cache.stop()
        asyncio.run(servers.recreate_postgres(pg_url, create=False, name=DATABASE))
        shutil.rmtree(workdir, ignore_errors=True)


def header(args: argparse.Namespace) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "bench"], capture_output=True,
                           text=True).stdout.strip()  # fmt: skip
    return (
        f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}"
        + (" (src/ or bench/ modified)" if dirty else " (src/ and bench/ clean)")
        + f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
        f"python {platform.python_version()}\n2 instances x 1 worker, PostgreSQL, Redis; "
        f"wrk -c{args.connections} per instance, {args.seconds:g} s per phase"
    )


def table(phases: list[tuple[str, wrk.Result]]) -> None:
    print("\n| phase | logins | errors | p50 ms | p99 ms | max ms |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, r in phases:
        print(f"| {name} | {r.requests} | {r.errors} | {r.p50_ms:.0f} | {r.p99_ms:.0f} "
              f"| {r.max_ms:.0f} |")  # fmt: skip
    up = [r for name, r in phases if name == "up"]
    hung = [r for name, r in phases if name == "hung"]
    worst = max(r.max_ms for r in hung)
    print(
        f"\nlongest login while Redis hung: {worst:.0f} ms = "
        f"{worst / statistics.median(r.p50_ms for r in up):.2f}x the median login with Redis up, "
        f"{worst / max(r.max_ms for r in up):.2f}x the longest with Redis up"
    )


if __name__ == "__main__":
    main()
