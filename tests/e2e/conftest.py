"""Real processes for the end-to-end tests: ``latchkey serve``, the CLI, the example API.

Every server is a subprocess on a free port of 127.0.0.1, with its own data directory and
cheap Argon2 settings; it is waited for with a bounded readiness loop and stopped by the
finalizer of the fixture that started it. Output goes to files, shown when start-up fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0  # seconds a server may take to answer its readiness probe
CLI_TIMEOUT = 60.0
PASSWORD = "correct horse battery staple"
CHEAP_ARGON2 = {
    "LATCHKEY_ARGON2_TIME_COST": "1",
    "LATCHKEY_ARGON2_MEMORY_KIB": "8",
    "LATCHKEY_ARGON2_PARALLELISM": "1",
}


def free_port() -> int:
    """A port nobody listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without LATCHKEY_* or proxy variables, plus ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LATCHKEY_") and not name.lower().endswith("_proxy")
    }
    env.update(extra)
    return env


def http_client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, trust_env=False, timeout=30)


def async_http_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30)


@dataclass
class Server:
    """A running subprocess that serves HTTP on ``base_url``."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_dir: Path
    env: dict[str, str] = field(repr=False)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def management_url(self) -> str:
        """Where a latchkey server serves /metrics and /readyz (LATCHKEY_MANAGEMENT_ADDR)."""
        return f"http://{self.env['LATCHKEY_MANAGEMENT_ADDR']}"

    def client(self) -> httpx.Client:
        return http_client(self.base_url)

    def async_client(self) -> httpx.AsyncClient:
        return async_http_client(self.base_url)

    def output(self) -> str:
        err = (self.log_dir / f"{self.name}.stderr").read_text(errors="replace")
        out = (self.log_dir / f"{self.name}.stdout").read_text(errors="replace")
        return f"--- stderr ---\n{err}\n--- stdout ---\n{out}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class Processes:
    """Starts servers and CLI commands; :meth:`stop_all` ends every server it started."""

    password = PASSWORD

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []

    # --- latchkey ------------------------------------------------------------------------

    def latchkey_env(self, data_dir: Path, **settings: str) -> dict[str, str]:
        return clean_env(LATCHKEY_DATA_DIR=str(data_dir), **CHEAP_ARGON2, **settings)

    def cli(
        self,
        data_dir: Path,
        *args: str,
        stdin: str | None = None,
        timeout: float = CLI_TIMEOUT,
        **settings: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m latchkey ARGS`` to completion against ``data_dir``."""
        return subprocess.run(
            [sys.executable, "-m", "latchkey", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.latchkey_env(data_dir, **settings),
            timeout=timeout,
            check=False,
        )

    def migrate(self, data_dir: Path, **settings: str) -> None:
        """``latchkey migrate``: the schema and the first signing key, as before a first start."""
        result = self.cli(data_dir, "migrate", **settings)
        assert result.returncode == 0, result.stderr

    def add_user(self, data_dir: Path, username: str, scope: str = "") -> None:
        """``latchkey user add USERNAME --scope SCOPE --password-stdin`` with PASSWORD."""
        result = self.cli(
            data_dir, "user", "add", username, "--scope", scope, "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"created user {username}" in result.stdout

    def start_latchkey(
        self,
        data_dir: Path,
        *,
        issuer_port: int | None = None,
        issuer_host: str = "127.0.0.1",
        wait: bool = True,
        workers: int = 1,
        **settings: str,
    ) -> Server:
        """``latchkey serve`` on a free port; the issuer is this server's URL unless given."""
        port = free_port()
        # A management listener of its own (/metrics, /readyz), not the shared default 9000.
        settings.setdefault("LATCHKEY_MANAGEMENT_ADDR", f"127.0.0.1:{free_port()}")
        env = self.latchkey_env(
            data_dir,
            LATCHKEY_ISSUER=f"http://{issuer_host}:{issuer_port or port}",
            **settings,
        )
        command = [sys.executable, "-m", "latchkey", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", str(workers)]
        server = self._spawn("latchkey", command, port, env)
        if wait:
            self.wait_ready(server, "/healthz")
        return server

    # --- the FastAPI example -------------------------------------------------------------

    def start_fastapi_example(self, auth: Server) -> Server:
        """examples/fastapi_api.py under uvicorn, trusting the JWKS of ``auth``."""
        port = free_port()
        env = clean_env(
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            LATCHKEY_JWKS_URL=f"{auth.env['LATCHKEY_ISSUER']}/.well-known/jwks.json",
            LATCHKEY_ISSUER=auth.env["LATCHKEY_ISSUER"],
            LATCHKEY_AUDIENCE="latchkey",
        )
        command = [
            sys.executable, "-m", "uvicorn", "--factory", "examples.fastapi_api:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        server = self._spawn("fastapi-example", command, port, env)
        self.wait_ready(server, "/health")
        return server

    # --- plumbing ------------------------------------------------------------------------

    def _spawn(self, kind: str, command: list[str], port: int, env: dict[str, str]) -> Server:
        name = f"{kind}-{port}"
        with (
            (self.workdir / f"{name}.stdout").open("wb") as stdout,
            (self.workdir / f"{name}.stderr").open("wb") as stderr,
        ):
            process = subprocess.Popen(
                command, cwd=self.workdir, env=env, stdout=stdout, stderr=stderr
            )
        server = Server(name, process, f"http://127.0.0.1:{port}", self.workdir, env)
        self.servers.append(server)
        return server

    def wait_ready(self, server: Server, path: str) -> None:
        """Poll ``path`` until it answers 200; fail with the server's output otherwise."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with http_client(server.base_url) as client:
            while True:
                code = server.process.poll()
                if code is not None:
                    pytest.fail(f"{server.name} exited with {code} at start-up\n{server.output()}")
                try:
                    if client.get(path, timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"{server.name} did not answer {path} within {STARTUP_TIMEOUT} s\n"
                        f"{server.output()}"
                    )
                time.sleep(0.05)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start servers for one test; all are stopped when the test ends."""
    manager = Processes(tmp_path)
    yield manager
    manager.stop_all()


@dataclass
class SharedLatchkey:
    """One ``latchkey serve`` for several tests, with users ``writer`` and ``reader``."""

    server: Server
    data_dir: Path
    processes: Processes


@pytest.fixture(scope="session")
def shared_latchkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedLatchkey]:
    """A latchkey service with default settings (grace window 10 s), shared by tests."""
    workdir = tmp_path_factory.mktemp("shared-latchkey")
    manager = Processes(workdir)
    data_dir = workdir / "data"
    try:
        manager.migrate(data_dir)
        manager.add_user(data_dir, "writer", "read write")
        manager.add_user(data_dir, "reader", "read")
        server = manager.start_latchkey(data_dir)
        yield SharedLatchkey(server, data_dir, manager)
    finally:
        manager.stop_all()


def _login(client: httpx.Client, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


@pytest.fixture
def login() -> Callable[..., dict[str, Any]]:
    """``login(client, username)``: the token pair of a user created with the shared password."""
    return _login
