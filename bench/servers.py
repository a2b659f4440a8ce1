"""The servers the comparison drives: latchkey (SQLite; PostgreSQL with two instances), a bare
Starlette + PyJWT app and a flask-jwt-extended app, each started in its own process group on a
free 127.0.0.1 port, with two server processes each. Setting them up (users, sessions) uses a
Python client; only the measurements use wrk."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
PEERS = Path(__file__).resolve().parent / "peers"
PG_DATABASE = "latchkey_bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def venv_command(name: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


class Process:
    """A server command in its own process group, its output in ``workdir/server.log``."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "server.log"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                command,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def workers(self) -> list[int]:
        """The pids of the processes that answer requests: the spawned workers if there are
        any, else the process itself."""
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes()
                if ppid == self.popen.pid and b"resource_tracker" not in cmdline:
                    children.append(int(entry.name))
        return sorted(children) or [self.popen.pid]

    def stop(self) -> None:
        if self.popen.poll() is None:
            for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, sig)
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Service:
    """One service under test: its instances' base URLs, its routes and its processes."""

    name: str
    urls: list[str]
    login_path: str
    me_path: str
    refresh_path: str
    refresh_mode: str  # "body" or "header"
    passwords: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()

    async def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False) as client:
            for url, process in zip(self.urls, self.processes, strict=True):
                while True:
                    if process.popen.poll() is not None:
                        raise RuntimeError(f"{self.name} exited:\n{process.log_tail()}")
                    with contextlib.suppress(httpx.TransportError):
                        await client.get(url + self.me_path)
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.name} did not start:\n{process.log_tail()}")
                    await asyncio.sleep(0.2)

    async def sessions(self, count: int) -> list[dict[str, Any]]:
        """``count`` fresh logins, spread over the users and the instances."""
        names = sorted(self.passwords)
        limit = asyncio.Semaphore(4)

        async def one(client: httpx.AsyncClient, index: int) -> dict[str, Any]:
            name = names[index % len(names)]
            async with limit:
                body = {"username": name, "password": self.passwords[name]}
                url = self.urls[index % len(self.urls)] + self.login_path
                response = await client.post(url, json=body)
            if response.status_code != 200:
                raise RuntimeError(f"{self.name}: login {response.status_code} {response.text}")
            pair: dict[str, Any] = response.json()
            return pair

        async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
            return list(await asyncio.gather(*(one(client, i) for i in range(count))))


def _passwords(count: int) -> dict[str, str]:
    return {f"bench-user-{i}": secrets.token_urlsafe(18) for i in range(count)}


def _clean_env(workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LATCHKEY_", "BENCH_")) and not key.lower().endswith("_proxy")
    }
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(workdir / "tmp")  # the servers' own temporary files go with workdir
    return env


def _latchkey_env(workdir: Path, database_url: str, port: int) -> dict[str, str]:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return {
        **_clean_env(workdir),
        "LATCHKEY_DATA_DIR": str(workdir / "data"),
        "LATCHKEY_DATABASE_URL": database_url,
        "LATCHKEY_SECRET_KEY": secret,  # shared: instances accept each other's tokens
        "LATCHKEY_ISSUER": f"http://{HOST}:{port}",
    }


def _run(command: list[str], env: dict[str, str], workdir: Path, stdin: str = "") -> None:
    result = subprocess.run(
        command, env=env, cwd=workdir, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def _latchkey_users(env: dict[str, str], workdir: Path, passwords: dict[str, str]) -> None:
    for name, password in passwords.items():
        add = [*venv_command("latchkey"), "user", "add", name, "--password-stdin"]
        _run([*add, "--scope", "read write"], env, workdir, stdin=password + "\n")


async def recreate_postgres(url: str, *, create: bool, name: str = PG_DATABASE) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def latchkey(
    name: str,
    workdir: Path,
    users: int,
    *,
    database_url: str = "",
    instances: int = 1,
    workers: int = 0,
    settings: dict[str, str] | None = None,
) -> Service:
    """``latchkey serve``: one instance with two workers, or ``instances`` of one worker
    (unless ``workers`` says otherwise); ``settings``: more LATCHKEY_* variables."""
    ports = [free_port() for _ in range(instances)]
    url = database_url or f"sqlite:///{workdir / 'latchkey.db'}"
    env = {**_latchkey_env(workdir, url, ports[0]), **(settings or {})}
    _run([*venv_command("latchkey"), "migrate"], env, workdir)
    service = Service(
        name,
        [f"http://{HOST}:{port}" for port in ports],
        "/auth/login",
        "/auth/me",
        "/auth/refresh",
        "body",
        _passwords(users),
    )
    _latchkey_users(env, workdir, service.passwords)
    workers = str(workers or (2 if instances == 1 else 1))
    for index, port in enumerate(ports):
        command = [*venv_command("latchkey"), "serve", "--port", str(port), "--workers", workers]
        instance = workdir / f"instance-{index}"
        service.processes.append(
            Process(command, {**env, "LATCHKEY_DATA_DIR": str(instance)}, instance)
        )
    return service


def bare_starlette(workdir: Path, key_file: Path) -> Service:
    port = free_port()
    env = {**_clean_env(workdir), "BENCH_KEY_FILE": str(key_file)}
    command = [
        *venv_command("uvicorn"),
        "bare_starlette:app",
        "--app-dir",
        str(PEERS),
        "--port",
        str(port),
        "--workers",
        "2",
        "--log-level",
        "warning",
    ]
    service = Service(
        "bare Starlette + PyJWT",
        [f"http://{HOST}:{port}"],
        "/login",
        "/me",
        "/refresh",
        "body",
        _passwords(1),
    )
    service.processes.append(Process(command, env, workdir))
    return service


def flask_jwt_extended(workdir: Path, key_file: Path, users: int) -> Service:
    port = free_port()
    env = {
        **_clean_env(workdir),
        "BENCH_KEY_FILE": str(key_file),
        "BENCH_DB": str(workdir / "peer.db"),
    }
    service = Service(
        "flask-jwt-extended",
        [f"http://{HOST}:{port}"],
        "/login",
        "/me",
        "/refresh",
        "header",
        _passwords(users),
    )
    schema = [sys.executable, str(PEERS / "flask_jwt.py")]
    _run(schema, env, workdir, stdin=json.dumps(service.passwords))
    command = [
        *venv_command("gunicorn"),
        "--chdir",
        str(PEERS),
        "-w",
        "2",
        "-b",
        f"{HOST}:{port}",
        "flask_jwt:app",
    ]
    service.processes.append(Process(command, env, workdir))
    return service
