"""What ``latchkey serve`` writes on stderr: JSON lines when stderr is a file or a pipe (the
start-up line and uvicorn's supervisor's lines included), readable lines on a terminal, and a
start-up line that says where to go next."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from e2e.conftest import Processes, free_port

pytestmark = pytest.mark.e2e

START_TIMEOUT = 120.0  # seconds the service may take to start on a busy machine
ADD_FIRST = "add the first with `latchkey user add NAME`"


def test_every_line_is_json_when_stderr_is_not_a_terminal(processes: Processes) -> None:
    """Two workers, stderr into a file: every line is one JSON object, latchkey's start-up
    line (the account page, how to add the first user) and uvicorn's supervisor's alike."""
    data_dir = processes.workdir / "data"
    processes.migrate(data_dir)
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = processes.latchkey_env(data_dir, LATCHKEY_ISSUER=issuer)
    command = [sys.executable, "-m", "latchkey", "serve", "--host", "127.0.0.1"]
    server = processes._spawn(
        "latchkey", [*command, "--port", str(port), "--workers", "2"], port, env
    )
    stderr = processes.workdir / f"{server.name}.stderr"
    # Both workers up (each a fresh interpreter: slow on a busy machine, hence the bound).
    deadline = time.monotonic() + START_TIMEOUT
    while stderr.read_text().count("Application startup complete") < 2:
        assert server.process.poll() is None, server.output()
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.1)
    processes.wait_ready(server, "/healthz")
    server.stop()  # the supervisor's and the workers' shutdown lines are written too

    text = stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # each line is JSON
    assert all(line.keys() >= {"ts", "level", "logger", "msg"} for line in lines), text
    (start,) = [line for line in lines if line["logger"] == "latchkey.serve"]
    assert start["level"] == "info"
    assert f"sign in at {issuer}/account" in start["msg"]
    assert ADD_FIRST in start["msg"]
    supervisor = [line["msg"] for line in lines if line["logger"] == "uvicorn.error"]
    assert any(msg.startswith("Started parent process") for msg in supervisor), text
    assert any(msg.startswith("Started server process") for msg in supervisor), text


def test_lines_are_readable_on_a_terminal(processes: Processes) -> None:
    """stderr on a terminal: readable lines, none of them JSON; once a user exists the
    start-up line no longer says how to add one, and it names the address listened on when
    the issuer is another."""
    data_dir = processes.workdir / "data"
    processes.migrate(data_dir)
    processes.add_user(data_dir, "alice")
    port = free_port()
    env = processes.latchkey_env(data_dir, LATCHKEY_ISSUER="https://auth.example.com")
    command = [sys.executable, "-m", "latchkey", "serve", "--host", "127.0.0.1"]
    terminal, stderr = pty.openpty()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=processes.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    os.close(stderr)
    seen = bytearray()
    started = threading.Event()

    def read() -> None:
        while True:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the process is gone and its end of the terminal closed
                return
            if not chunk:
                return
            seen.extend(chunk)
            if b"Application startup complete" in seen:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(START_TIMEOUT), seen.decode(errors="replace")
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=10)
        os.close(terminal)

    lines = seen.decode(errors="replace").splitlines()
    assert lines and not any(line.lstrip().startswith("{") for line in lines), lines
    (start,) = [line for line in lines if "latchkey.serve:" in line]
    assert " INFO latchkey.serve: latchkey is starting on http://127.0.0.1:" in start
    assert start.endswith("sign in at https://auth.example.com/account")
    assert ADD_FIRST not in start
    assert any("INFO uvicorn.error: Application startup complete" in line for line in lines)
