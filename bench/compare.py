"""latchkey beside its peers, on loopback, in one run: writes docs/benchmarks.md and its chart.

Starts, each with two server processes on this machine:

- ``latchkey serve --workers 2`` on its embedded SQLite (the default deployment);
- latchkey on PostgreSQL, two instances of ``latchkey serve --workers 1`` sharing one database
  (``latchkey_bench`` on ``--postgres``, dropped and created anew, dropped at the end);
- a bare Starlette + PyJWT app under uvicorn (bench/peers/bare_starlette.py): the floor;
- Flask + flask-jwt-extended + Flask-SQLAlchemy under gunicorn (bench/peers/flask_jwt.py).

and drives them with Debian's ``wrk`` (Lua scripts in bench/wrk/), one service at a time:
``/me`` at 50 connections, 20 refresh chains, then latchkey alone: logins against what
Argon2id allows, ``/auth/me`` while 20 logins run, and a mixed soak with the workers' memory.
The Verifier's cost against the raw signature check (bench/verify.py, RS256) is measured too.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/compare.py [--seconds 15] [--soak 60] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import report
import servers
import verify
import wrk
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from servers import Service
from wrk import Result

from latchkey.core.passwords import PasswordHasher

ROOT = Path(__file__).resolve().parents[1]
USERS = 20
ME_CONNECTIONS = 50
CHAINS = 20
LOGINS_AT_ONCE = 20
SOAK_DELAY_MS = 20  # per connection between requests in the soak (500 ms for logins)


def write_lines(path: Path, lines: list[str]) -> dict[str, str]:
    path.write_text("\n".join(lines) + "\n")
    return {"WRK_TOKENS": str(path), "WRK_USERS": str(path)}


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def measure_me(service: Service, workdir: Path, seconds: float) -> Result:
    tokens = [pair["access_token"] for pair in asyncio.run(service.sessions(USERS))]
    runs = []
    for index, url in enumerate(service.urls):  # one wrk per instance, side by side
        env = write_lines(workdir / f"me-{index}.txt", tokens)
        connections = ME_CONNECTIONS // len(service.urls)
        threads = 2 // len(service.urls)
        runs.append(
            wrk.Run(
                url + service.me_path,
                "me",
                connections=connections,
                threads=threads,
                seconds=seconds,
                env=env,
            )
        )
    return Result.combine([run.result() for run in runs])


def measure_refresh(service: Service, workdir: Path, seconds: float) -> Result:
    tokens = [pair["refresh_token"] for pair in asyncio.run(service.sessions(CHAINS))]
    runs = []
    for index, (url, chunk) in enumerate(
        zip(service.urls, split(tokens, len(service.urls)), strict=True)
    ):
        env = write_lines(workdir / f"refresh-{index}.txt", chunk)
        env["WRK_REFRESH_MODE"] = service.refresh_mode
        runs.append(
            wrk.Run(
                url + service.refresh_path,
                "refresh",
                connections=len(chunk),
                threads=len(chunk),
                seconds=seconds,
                env=env,
            )
        )
    return Result.combine([run.result() for run in runs])


def users_env(service: Service, path: Path) -> dict[str, str]:
    return write_lines(path, [f"{name}\t{pw}" for name, pw in sorted(service.passwords.items())])


def kdf_logins_per_second(samples: int = 8) -> tuple[float, float]:
    """(CPU seconds of one Argon2id verify at the default parameters, cores ÷ that)."""
    hasher = PasswordHasher()
    stored = hasher.hash("correct horse battery staple")
    hasher.verify(stored, "correct horse battery staple")  # warm up
    started = time.process_time()
    for _ in range(samples):
        hasher.verify(stored, "correct horse battery staple")
    cpu = (time.process_time() - started) / samples
    return cpu, (os.cpu_count() or 1) / cpu


def measure_logins(service: Service, workdir: Path, seconds: float) -> Result:
    env = users_env(service, workdir / "users.txt")
    url = service.urls[0] + service.login_path
    return wrk.run(url, "login", connections=8, threads=2, seconds=seconds, env=env)


def measure_me_under_logins(
    service: Service, workdir: Path, seconds: float
) -> tuple[Result, Result, Result]:
    """(``/auth/me`` idle, ``/auth/me`` while 20 logins run, those logins)."""
    idle = measure_me(service, workdir, seconds)
    tokens = [pair["access_token"] for pair in asyncio.run(service.sessions(USERS))]
    env = {**write_lines(workdir / "me-busy.txt", tokens)}
    url = service.urls[0]
    logins = wrk.Run(
        url + service.login_path,
        "login",
        connections=LOGINS_AT_ONCE,
        threads=1,
        seconds=seconds + 4,
        env=users_env(service, workdir / "users.txt"),
    )
    time.sleep(2)  # the logins are running before /auth/me is measured
    busy = wrk.run(
        url + service.me_path, "me", connections=ME_CONNECTIONS, threads=1, seconds=seconds, env=env
    )
    return idle, busy, logins.result()


def measure_soak(
    service: Service, workdir: Path, seconds: float
) -> tuple[dict[str, Result], list[tuple[float, int]]]:
    """me, refresh chains and logins at once; (results, [(second, worker RSS KiB)])."""
    pairs = asyncio.run(service.sessions(USERS))
    url = service.urls[0]
    # A steady load below capacity: each connection waits between its requests.
    me_env = write_lines(workdir / "soak-me.txt", [p["access_token"] for p in pairs])
    me_env["WRK_DELAY_MS"] = str(SOAK_DELAY_MS)
    chains = [p["refresh_token"] for p in pairs[:10]]
    refresh_env = {
        **write_lines(workdir / "soak-refresh.txt", chains),
        "WRK_REFRESH_MODE": "body",
        "WRK_DELAY_MS": str(SOAK_DELAY_MS),
    }
    login_env = {**users_env(service, workdir / "users.txt"), "WRK_DELAY_MS": "500"}
    runs = {
        "me": wrk.Run(
            url + service.me_path, "me", connections=20, threads=1, seconds=seconds, env=me_env
        ),
        "refresh": wrk.Run(
            url + service.refresh_path,
            "refresh",
            connections=len(chains),
            threads=len(chains),
            seconds=seconds,
            env=refresh_env,
        ),
        "login": wrk.Run(
            url + service.login_path,
            "login",
            connections=2,
            threads=1,
            seconds=seconds,
            env=login_env,
        ),
    }
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        pids = [pid for process in service.processes for pid in process.workers()]
        while not stop.wait(1.0):
            total = 0
            for pid in pids:
                total += servers.rss_kib(pid)
            samples.append((time.monotonic() - started, total))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    results = {name: run.result() for name, run in runs.items()}
    stop.set()
    sampler.join()
    return results, samples


def verifier_ratio() -> dict[str, float]:
    cases, _ = verify.build_cases("RS256")
    verify.measure(cases, 2.0)
    by_name = {case.name: case.best * 1e6 for case in cases}
    raw = by_name["raw cryptography check"]
    return {"raw_us": raw, "verifier_us": by_name["latchkey Verifier.verify"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement (15)")
    parser.add_argument("--soak", type=float, default=60.0, help="mixed soak seconds (60)")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server (any database on it); latchkey_bench is created there",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    wrk.require_wrk()

    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-compare-"))
    key_file = workdir / "peer-key.pem"
    key_file.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pg_url = args.postgres.rsplit("/", 1)[0] + "/" + servers.PG_DATABASE
    asyncio.run(servers.recreate_postgres(pg_url, create=True))
    services: list[Service] = []
    results: dict[str, Any] = {}
    try:
        print("starting the services", file=sys.stderr)
        services = [
            servers.latchkey("latchkey (SQLite)", workdir / "sqlite", USERS),
            servers.latchkey(
                "latchkey (PostgreSQL, 2 instances)",
                workdir / "pg",
                USERS,
                database_url=pg_url,
                instances=2,
            ),
            servers.flask_jwt_extended(workdir / "flask", key_file, USERS),
            servers.bare_starlette(workdir / "bare", key_file),
        ]
        for service in services:
            asyncio.run(service.wait_up())
        results["me"] = {}
        results["refresh"] = {}
        for service in services:
            print(f"GET /me: {service.name}", file=sys.stderr)
            results["me"][service.name] = measure_me(service, workdir, args.seconds)
        for service in services:
            print(f"POST /refresh: {service.name}", file=sys.stderr)
            results["refresh"][service.name] = measure_refresh(service, workdir, args.seconds)
        lk = services[0]
        print("logins", file=sys.stderr)
        results["kdf_cpu"], results["kdf_bound"] = kdf_logins_per_second()
        results["login"] = measure_logins(lk, workdir, args.seconds)
        print("/auth/me while 20 logins run", file=sys.stderr)
        results["me_idle"], results["me_busy"], results["busy_logins"] = measure_me_under_logins(
            lk, workdir, args.seconds
        )
        print(f"mixed soak, {args.soak:g} s", file=sys.stderr)
        results["soak"], results["rss"] = measure_soak(lk, workdir, args.soak)
        print("Verifier against the raw signature check", file=sys.stderr)
        results["verify"] = verifier_ratio()
    finally:
        for service in services:
            service.stop()
        asyncio.run(servers.recreate_postgres(pg_url, create=False))
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    context = report.Context(
        started=started,
        load_before=load_before,
        load_after=os.getloadavg(),
        command=" ".join([os.path.basename(sys.executable), *sys.argv]),
        seconds=args.seconds,
        soak_seconds=args.soak,
    )
    text = report.markdown(context, results)
    if args.no_write:
        print(text)
    else:
        report.write(ROOT / "docs" / "benchmarks.md", text)
        report.chart(results, ROOT / "docs" / "benchmarks.png")
        print("wrote docs/benchmarks.md and docs/benchmarks.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
