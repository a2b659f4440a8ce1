"""A guarded API's throughput while its key server fails, against normal, in one run (wrk).

The script runs, all on 127.0.0.1:

- a key server in this process: a real HTTP server publishing one ES256 key with
  ``Cache-Control: max-age=1``, that it can make hang (accept, never answer), refuse
  connections, or answer 500;
- the guarded API: ``uvicorn`` (one worker) serving a Starlette app whose every route is
  behind ``BearerAuthMiddleware`` with ``Verifier.from_jwks_url(key server,
  min_refetch_interval=1)`` — so the set goes stale after 1 s and a refresh is due all the
  time: the worst case for a guard that fetched on the request path;
- ``wrk`` sending ``GET /whoami`` with one valid access token.

It measures phases of ``--seconds`` each, interleaved ``--rounds`` times so that the machine's
noise hits them alike: ``normal`` (the key server answers), ``hang``, ``refuse`` and ``500``.
Before each outage phase the key server changes, then the script waits until the guard's
refresh has met the outage (the key server counts a hung request, or a refused or failed
fetch is logged by the guard's own metric) before wrk starts. It prints, per phase, requests
per second (median over the rounds, and each round), errors (non-2xx answers and socket
errors), latency p50/p99/max as wrk reports them (bench/wrk.py), and the ratio to
``normal``; then the time an unknown key id takes to get its 503 while the key server hangs
(``--probes`` sequential requests).

    .venv/bin/python bench/guard_outage.py [--seconds 10] [--rounds 3] [--connections 32]

Run it alone on the machine: nothing else should be using its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import wrk  # bench/wrk.py

HOST = "127.0.0.1"
ISSUER = "https://auth.bench.test"
AUDIENCE = "bench-api"
PHASES = ("normal", "hang", "refuse", "500")


# --- the guarded API (run by uvicorn in its own process) -----------------------------------


def create_app() -> Any:
    """The API uvicorn serves: ``--factory guard_outage:create_app`` with ``--app-dir bench``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from latchkey import Verifier
    from latchkey.guard import BearerAuthMiddleware

    verifier = Verifier.from_jwks_url(
        os.environ["BENCH_JWKS_URL"], issuer=ISSUER, audience=AUDIENCE, min_refetch_interval=1
    )

    async def whoami(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.state.claims["sub"]})

    async def keyset(_request: Request) -> JSONResponse:
        source: Any = verifier.key_source
        return JSONResponse(
            {"age": source.age(), "failures": sum(source.failure_counts().values())}
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await verifier.warm_up_async()
        yield
        await verifier.aclose()

    return Starlette(
        routes=[Route("/whoami", whoami), Route("/keyset", keyset)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, public_paths={"/keyset"})],
        lifespan=lifespan,
    )


# --- the key server (in this process) ------------------------------------------------------


class KeyServer:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.body = json.dumps(jwks).encode()
        self.mode = "normal"
        self.held = 0
        self._released = threading.Event()
        self._released.set()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not owner._released.is_set():
                    owner.held += 1
                    owner._released.wait(600)
                status = 500 if owner.mode == "500" else 200
                body = owner.body if status == 200 else b"oops"
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "public, max-age=1")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._handler = Handler
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self._listen()
        self.url = f"http://{HOST}:{self.port}/.well-known/jwks.json"

    def _listen(self) -> None:
        server = ThreadingHTTPServer((HOST, self.port), self._handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def _close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def set(self, mode: str) -> None:
        if self.mode == "refuse":
            self._listen()
        self.mode = mode
        if mode == "hang":
            self._released.clear()
        else:
            self._released.set()
        if mode == "refuse":
            self._close()


# --- driving -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--probes", type=int, default=5)
    options = parser.parse_args()

    from latchkey import SigningKey, SystemClock
    from latchkey.core.access import AccessTokenIssuer

    key, stranger = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    tokens = {
        name: AccessTokenIssuer(k, issuer=ISSUER, audience=AUDIENCE, ttl=3600, clock=SystemClock())
        .issue(subject="bench-user", sid="bench-sid", scope="read", auth_time=int(time.time()))
        .token
        for name, k in (("known", key), ("unknown", stranger))
    }
    keys = KeyServer({"keys": [key.public.to_jwk()]})
    port = free_port()
    api = f"http://{HOST}:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp, "tokens")
        token_file.write_text(tokens["known"] + "\n")
        env = {**os.environ, "BENCH_JWKS_URL": keys.url}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "guard_outage:create_app",
                "--app-dir",
                str(Path(__file__).parent),
                "--host",
                HOST,
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            start_new_session=True,
        )
        try:
            run(options, keys, api, tokens, token_file)
        finally:
            os.killpg(server.pid, signal.SIGINT)
            server.wait(30)


def run(
    options: argparse.Namespace, keys: KeyServer, api: str, tokens: dict[str, str], token_file: Path
) -> None:
    http = httpx.Client(base_url=api, trust_env=False, timeout=10)
    wait_until(lambda: _up(http), "the guarded API")
    known = {"Authorization": f"Bearer {tokens['known']}"}
    unknown = {"Authorization": f"Bearer {tokens['unknown']}"}
    assert http.get("/whoami", headers=known).status_code == 200
    results: dict[str, list[wrk.Result]] = {phase: [] for phase in PHASES}
    print(_header(options), flush=True)
    for round_ in range(1, options.rounds + 1):
        for phase in PHASES:
            keys.set(phase)
            if phase != "normal":
                _meet_outage(http, keys, phase, known)
            report = wrk.run(
                api + "/whoami",
                "me",  # GET with the bearer tokens of WRK_TOKENS
                connections=options.connections,
                seconds=options.seconds,
                threads=1,
                env={"WRK_TOKENS": str(token_file)},
            )
            results[phase].append(report)
            print(
                f"round {round_} {phase:>6}: {report.rate:8.0f} req/s, "
                f"errors {report.errors}, max {report.max_ms:.1f} ms",
                flush=True,
            )
            keys.set("normal")
            _recover(http, unknown)
    keys.set("hang")
    _meet_outage(http, keys, "hang", known)
    probes = []
    for _ in range(options.probes):
        started = time.perf_counter()
        answer = http.get("/whoami", headers=unknown)
        probes.append(
            (time.perf_counter() - started, answer.status_code, answer.headers.get("retry-after"))
        )
        time.sleep(1.1)  # past the 1 s cooldown, so every probe asks for a fetch of its own
    keys.set("normal")
    _table(results, probes)


def _up(http: httpx.Client) -> bool:
    try:
        return http.get("/keyset").status_code == 200
    except httpx.HTTPError:
        return False


def _meet_outage(http: httpx.Client, keys: KeyServer, phase: str, known: dict[str, str]) -> None:
    """Return once the guard's refresh has run into the outage."""
    if phase == "hang":
        held = keys.held
        wait_until(lambda: http.get("/whoami", headers=known) and keys.held > held, "a hung fetch")
        return
    before = http.get("/keyset").json()["failures"]
    wait_until(
        lambda: (
            http.get("/whoami", headers=known) and http.get("/keyset").json()["failures"] > before
        ),
        f"a failed fetch ({phase})",
    )


def _recover(http: httpx.Client, unknown: dict[str, str]) -> None:
    """Return once the guard has fetched the key set again (an unknown key id asks for a
    fetch, at most once per second)."""

    def fetched() -> bool:
        http.get("/whoami", headers=unknown)
        age = http.get("/keyset").json()["age"]
        return age is not None and age < 0.5

    wait_until(fetched, "a good fetch after the outage")


def _header(options: argparse.Namespace) -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src", "bench"], capture_output=True, text=True
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("starlette", "uvicorn", "httpx"))
    return "\n".join(
        [
            f"date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}"
            + (" (src/ or bench/ modified)" if dirty else " (src/ and bench/ clean)"),
            f"machine: {cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
            f"python {platform.python_version()}, {versions}, "
            + re.sub(r"\s+", " ", (wrk_version.stdout + wrk_version.stderr).splitlines()[0]),
            f"wrk -t1 -c{options.connections} -d{options.seconds}s --timeout 10s per phase, "
            f"{options.rounds} rounds; uvicorn 1 worker",
        ]
    )


def _table(results: dict[str, list[wrk.Result]], probes: list[Any]) -> None:
    normal = statistics.median(r.rate for r in results["normal"])
    print(
        "\n| key server | req/s (median) | each round | vs normal | errors "
        "| p50 ms | p99 ms | max ms |"
    )
    print("|---|--:|---|--:|--:|--:|--:|--:|")
    for phase, reports in results.items():
        rps = statistics.median(r.rate for r in reports)
        rounds = ", ".join(f"{r.rate:.0f}" for r in reports)
        print(
            f"| {phase} | {rps:.0f} | {rounds} | {rps / normal:.2f} | "
            f"{sum(r.errors for r in reports)} | "
            f"{statistics.median(r.p50_ms for r in reports):.2f} | "
            f"{statistics.median(r.p99_ms for r in reports):.2f} | "
            f"{max(r.max_ms for r in reports):.1f} |"
        )
    print("\nunknown key id while the key server hangs:")
    for seconds, status, retry_after in probes:
        print(f"  {status} in {seconds * 1000:.0f} ms, Retry-After {retry_after}")


if __name__ == "__main__":
    main()
