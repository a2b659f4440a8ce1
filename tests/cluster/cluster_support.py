"""Throwaway servers for the multi-instance and fault tests (issue 3 §4, §5).

A test gets throwaway servers it may stop, crash and restart: a private PostgreSQL
(``initdb`` once per run into a template that every test copies, then ``postgres`` on a
spare port), a private ``redis-server``, and N ``latchkey serve`` processes that share the
database URL, ``LATCHKEY_SECRET_KEY``, the issuer and (optionally) the Redis URL, each with
its own data directory. Every process is started with a bounded readiness loop and stopped
by the finalizer of the fixture that started it (see conftest.py), also when the test fails;
:data:`LIVE` lists the servers now running, for the logs of a failing test's report.

Run as root, PostgreSQL refuses to start, so initdb and postgres then run as the
``postgres`` OS user (``subprocess.Popen(user=…)``: the child *is* postgres, no wrapper that
would translate signals) in a directory under /tmp owned by that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis

from latchkey.adapters.keyfiles import new_secret
from latchkey.settings import ENV_PREFIX, Settings

PASSWORD = "correct horse battery staple"
ISSUER = "http://latchkey.cluster.test"  # one deployment: every instance has this issuer
STARTUP_TIMEOUT = 120.0  # seconds a server may take to become ready (a bound: a busy machine)
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0
PG_USER = "postgres"
CHEAP_ARGON2 = {
    "LATCHKEY_ARGON2_TIME_COST": "1",
    "LATCHKEY_ARGON2_MEMORY_KIB": "8",
    "LATCHKEY_ARGON2_PARALLELISM": "1",
}

# Every server started here and not yet stopped, for the failure report.
LIVE: list[Any] = []


# --- small helpers ---------------------------------------------------------------------------


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
        if not name.startswith(ENV_PREFIX) and not name.lower().endswith("_proxy")
    }
    env.update(extra)
    return env


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process(process: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig``, wait; SIGKILL if the process lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=STOP_TIMEOUT)


def _wait_until(ready: Callable[[], bool], alive: Callable[[], bool], what: str, log: str) -> None:
    """Poll ``ready`` every 50 ms for at most STARTUP_TIMEOUT s; fail with ``log`` otherwise."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if not alive():
            pytest.fail(f"{what} exited at start-up\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not ready within {STARTUP_TIMEOUT} s\n{log}")
        time.sleep(0.05)


# --- PostgreSQL ------------------------------------------------------------------------------


def postgres_bin() -> Path | None:
    configured = os.environ.get("LATCHKEY_TEST_PG_BIN")
    candidates = [Path(configured)] if configured else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "postgres").exists():
            return candidate
    found = shutil.which("postgres")
    return Path(found).parent if found and shutil.which("initdb") else None


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run the child as the postgres OS user when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(PG_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def private_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that the PostgreSQL user owns (mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _pg_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


class ThrowawayPostgres:
    """A private PostgreSQL on a spare port of 127.0.0.1, with a database ``latchkey``.

    :meth:`stop` is a fast shutdown (SIGINT) or, with ``crash=True``, SIGKILL of the
    postmaster and all its children; :meth:`pause`/:meth:`resume` hang and wake them;
    :meth:`start` starts it again on the same data directory and port.
    """

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data_dir = root / "data"
        self.socket_dir = root / "sockets"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.name = f"postgres-{self.port}"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/latchkey"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> str:
        return tail(self.log_path)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env=_pg_env(),
            cwd=self.root,
            timeout=CLI_TIMEOUT,
            check=False,
            **_as_postgres(),
        )

    def ready(self) -> bool:
        """pg_isready: the server accepts connections on its TCP port."""
        probe = self._run("pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1")
        return probe.returncode == 0

    def start(self) -> None:
        assert not self.running, "already running"
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)
        command = [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=log,
                env=_pg_env(),
                cwd=self.root,
                **_as_postgres(),
            )
        LIVE.append(self)
        _wait_until(self.ready, lambda: self.running, self.name, self.log_tail())

    def stop(self, *, crash: bool = False) -> None:
        """Fast shutdown (SIGINT: sessions are ended, nothing waits), or SIGKILL everything."""
        if crash and self.running:
            self._signal_all(signal.SIGKILL)
        process, self._process = self._process, None
        if process is not None:
            _stop_process(process, signal.SIGKILL if crash else signal.SIGINT)
        if self in LIVE:
            LIVE.remove(self)

    def _pids(self) -> list[int]:
        """The postmaster and its children (each backend leads its own process group, so a
        signal to the postmaster's group would not reach them)."""
        assert self._process is not None
        postmaster = self._process.pid
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def _signal_all(self, sig: int) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def pause(self) -> None:
        """SIGSTOP the postmaster and every child: a hung server (the kernel still accepts
        connections, nothing answers)."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_all(signal.SIGCONT)

    def create_database(self, name: str = "latchkey") -> None:
        result = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def sql(self, statement: str) -> list[list[str]]:
        """Rows of one query on the ``latchkey`` database (unaligned, tab-separated)."""
        result = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "latchkey",
            "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t", "-c", statement,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return [line.split("\t") for line in result.stdout.splitlines()]


def init_template(bin_dir: Path, root: Path) -> Path:
    """initdb into ``root/data`` (trust auth, superuser postgres); return the data dir."""
    result = subprocess.run(
        [
            str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust",
            "-U", "postgres", "-E", "UTF8", "--no-locale", "--no-sync",
        ],
        capture_output=True, text=True, env=_pg_env(), cwd=root, timeout=CLI_TIMEOUT,
        check=False, **_as_postgres(),
    )  # fmt: skip
    assert result.returncode == 0, f"initdb failed:\n{result.stdout}\n{result.stderr}"
    return root / "data"


@contextlib.contextmanager
def running_postgres(template: tuple[Path, Path]) -> Iterator[ThrowawayPostgres]:
    """A copy of the template cluster, started, with database ``latchkey``; always removed."""
    bin_dir, template_data = template
    root = private_dir("latchkey-pg-")
    server = ThrowawayPostgres(bin_dir, root)
    try:
        copied = subprocess.run(
            ["cp", "-a", str(template_data), str(server.data_dir)],
            capture_output=True, text=True, cwd=root, timeout=CLI_TIMEOUT, check=False,
            **_as_postgres(),
        )  # fmt: skip
        assert copied.returncode == 0, copied.stderr
        server.start()
        server.create_database()
        yield server
    finally:
        server.stop(crash=True)
        shutil.rmtree(root, ignore_errors=True)


# --- Redis -----------------------------------------------------------------------------------


class ThrowawayRedis:
    """A private ``redis-server`` without persistence on a spare port; stop() and start()."""

    def __init__(self, executable: str, workdir: Path) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = free_port()
        self.name = f"redis-{self.port}"
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self) -> str:
        return tail(self.log_path)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)

    def ready(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        assert not self.running, "already running"
        command = [
            self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)
        LIVE.append(self)
        _wait_until(self.ready, lambda: self.running, self.name, self.log_tail())

    def stop(self, *, crash: bool = True) -> None:
        """SIGKILL (as a crash) by default; SIGTERM with ``crash=False``."""
        process, self._process = self._process, None
        if process is not None:
            _stop_process(process, signal.SIGKILL if crash else signal.SIGTERM)
        if self in LIVE:
            LIVE.remove(self)

    def pause(self) -> None:
        """Hang the server (SIGSTOP): the kernel accepts connections, nothing answers."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to ``channel`` right now (PUBSUB NUMSUB)."""
        client = self.client()
        try:
            return int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
        finally:
            client.close()


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[ThrowawayRedis]:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(executable, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- latchkey --------------------------------------------------------------------------------


@dataclass
class Instance:
    """One ``latchkey serve`` process on ``port``; it may be stopped, killed and restarted."""

    name: str
    port: int
    env: dict[str, str] = field(repr=False)
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        """Where this instance serves /metrics (LATCHKEY_MANAGEMENT_ADDR)."""
        return f"http://{self.env['LATCHKEY_MANAGEMENT_ADDR']}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        return tail(self.log_path)

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, trust_env=False, timeout=timeout)

    def async_client(self, timeout: float = 30) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, trust_env=False, timeout=timeout)

    def spawn(self) -> None:
        assert not self.running, "already running"
        command = [
            sys.executable, "-m", "latchkey", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, env=self.env, stdout=log, stderr=log
            )
        LIVE.append(self)

    def healthy(self) -> bool:
        try:
            with self.client(timeout=1) as client:
                return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self) -> None:
        _wait_until(self.healthy, lambda: self.running, self.name, self.log_tail())

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM (uvicorn's graceful shutdown); SIGKILL if it does not end in time."""
        process, self.process = self.process, None
        if process is not None:
            _stop_process(process, signal.SIGTERM)
        if self in LIVE:
            LIVE.remove(self)

    def kill(self) -> None:
        """``kill -9``: no shutdown code of latchkey runs."""
        process, self.process = self.process, None
        if process is not None:
            _stop_process(process, signal.SIGKILL)
        if self in LIVE:
            LIVE.remove(self)


class Cluster:
    """Latchkey instances sharing one PostgreSQL, one secret, one issuer and maybe a Redis."""

    password = PASSWORD

    def __init__(
        self, workdir: Path, database_url: str, redis_url: str | None = None, **settings: str
    ) -> None:
        self.workdir = workdir
        self.secret = new_secret()  # what `latchkey keys secret` prints
        self.values: dict[str, str] = {
            "LATCHKEY_DATABASE_URL": database_url,
            "LATCHKEY_SECRET_KEY": self.secret,
            "LATCHKEY_ISSUER": ISSUER,
            "LATCHKEY_LOG_FORMAT": "text",
            # The fault tests' traffic logs one user in over and over while its first sessions
            # go on refreshing; the cap on a user's live sessions (docs/sessions.md), which
            # would end those oldest sessions, has tests of its own.
            "LATCHKEY_MAX_SESSIONS_PER_USER": "100000",
            **CHEAP_ARGON2,
            **settings,
        }
        if redis_url is not None:
            self.values["LATCHKEY_REDIS_URL"] = redis_url
        self.instances: list[Instance] = []

    def env(self, data_dir: Path) -> dict[str, str]:
        return clean_env(LATCHKEY_DATA_DIR=str(data_dir), **self.values)

    def settings(self, data_dir: Path) -> Settings:
        """In-process Settings with the very values the instances run with."""
        fields: dict[str, Any] = {
            name.removeprefix(ENV_PREFIX).lower(): value for name, value in self.values.items()
        }
        return Settings(_env_file=None, data_dir=data_dir, **fields)  # type: ignore[call-arg]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m latchkey ARGS`` with the cluster's environment, to completion."""
        return subprocess.run(
            [sys.executable, "-m", "latchkey", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env(self.workdir / "cli-data"),
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def migrate(self) -> None:
        result = self.cli("migrate")
        assert result.returncode == 0, result.stderr

    def add_user(self, username: str) -> None:
        result = self.cli("user", "add", username, "--password-stdin", stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
        assert f"created user {username}" in result.stdout

    def start(self, count: int) -> list[Instance]:
        """Start ``count`` more instances at once, then wait until each answers /healthz."""
        started = []
        for _ in range(count):
            port = free_port()
            data_dir = self.workdir / f"data-{port}"
            env = {**self.env(data_dir), "LATCHKEY_MANAGEMENT_ADDR": f"127.0.0.1:{free_port()}"}
            instance = Instance(f"latchkey-{port}", port, env, self.workdir)
            self.instances.append(instance)
            instance.spawn()
            started.append(instance)
        for instance in started:
            instance.wait_ready()
        return started

    def stop_all(self) -> None:
        for instance in reversed(self.instances):
            instance.stop()


@contextlib.contextmanager
def running_cluster(
    workdir: Path, database_url: str, redis_url: str | None = None, **settings: str
) -> Iterator[Cluster]:
    cluster = Cluster(workdir, database_url, redis_url, **settings)
    try:
        yield cluster
    finally:
        cluster.stop_all()


MakeCluster = Callable[..., Cluster]


@dataclass
class TwoInstances:
    """Two instances A and B sharing one PostgreSQL and one Redis; user ``alice`` exists."""

    GRACE: ClassVar[int] = 10  # LATCHKEY_REFRESH_GRACE of the pair, seconds
    KEY_REFRESH_INTERVAL: ClassVar[int] = 1  # LATCHKEY_KEY_REFRESH_INTERVAL, seconds

    cluster: Cluster
    a: Instance
    b: Instance
    postgres: ThrowawayPostgres
    redis: ThrowawayRedis


# --- HTTP helpers ----------------------------------------------------------------------------


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def alogin(client: httpx.AsyncClient, username: str) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/auth/refresh", json={"refresh_token": token})


async def wait_for_status(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, bound: float
) -> float | None:
    """Poll GET ``path`` every 50 ms until it answers ``status``; the seconds it took, or
    None when ``bound`` seconds passed first."""
    start = time.monotonic()
    while True:
        if (await client.get(path, headers=headers)).status_code == status:
            return time.monotonic() - start
        if time.monotonic() - start >= bound:
            return None
        await asyncio.sleep(0.05)


async def check_logout_reaches(
    a: httpx.AsyncClient, b: httpx.AsyncClient, username: str, bound: float = 1.0
) -> None:
    """Log in and out on A; assert B refuses the access token within ``bound`` seconds, on
    /auth/me and in B's in-memory guard.

    /auth/me reads the session row, so it refuses at once even without a fan-out. The guard
    alone is seen through POST /auth/logout with the bearer token on B: B checks the token
    against its deny-list first, so 401 means the revocation reached B (204 would mean B's
    guard still accepted it). One probe only, shortly before ``bound``: a 204 would put the
    sid on B's list by B's own doing.
    """
    pair = await alogin(a, username)
    assert (await b.get("/auth/me", headers=bearer(pair))).status_code == 200
    logout = await a.post("/auth/logout", headers=bearer(pair))
    logged_out_at = time.monotonic()
    assert logout.status_code == 204, logout.text

    took = await wait_for_status(b, "/auth/me", bearer(pair), 401, bound)
    assert took is not None, f"/auth/me on B still accepts the token after {bound} s"

    await asyncio.sleep(max(0.0, logged_out_at + bound * 0.9 - time.monotonic()))
    probe = await b.post("/auth/logout", headers=bearer(pair))
    assert probe.status_code == 401, f"B's guard did not learn of the logout within {bound} s"
    assert probe.headers["www-authenticate"].startswith("Bearer")
