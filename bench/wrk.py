"""Running Debian's ``wrk`` with the Lua scripts in bench/wrk/ and reading what it measured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "wrk"


@dataclass(frozen=True)
class Result:
    """One wrk run, or several run side by side against the instances of one service."""

    requests: int
    seconds: float
    errors: int  # non-2xx/3xx answers, and connect, read, write and timeout errors
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @staticmethod
    def combine(parts: list[Result]) -> Result:
        """Runs side by side: requests add up, the percentiles are the worst of the parts
        (an upper bound of the combined percentile)."""
        return Result(
            requests=sum(p.requests for p in parts),
            seconds=max(p.seconds for p in parts),
            errors=sum(p.errors for p in parts),
            p50_ms=max(p.p50_ms for p in parts),
            p90_ms=max(p.p90_ms for p in parts),
            p99_ms=max(p.p99_ms for p in parts),
            max_ms=max(p.max_ms for p in parts),
        )


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    return found


class Run:
    """``wrk`` started in the background; :meth:`result` waits for it."""

    def __init__(
        self,
        url: str,
        scenario: str,
        *,
        connections: int,
        seconds: float,
        threads: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        script = tempfile.NamedTemporaryFile(  # noqa: SIM115 - removed in result()
            "w", suffix=".lua", delete=False
        )
        with script:
            script.write((SCRIPTS / "common.lua").read_text())
            script.write((SCRIPTS / f"{scenario}.lua").read_text())
        self._script = script.name
        command = [
            require_wrk(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            self._script,
            url,
        ]
        self._process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def result(self) -> Result:
        out, _ = self._process.communicate()
        os.unlink(self._script)
        lines = [line for line in out.splitlines() if line.startswith("WRKJSON ")]
        if self._process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({self._process.returncode}):\n{out}")
        data = json.loads(lines[-1].removeprefix("WRKJSON "))
        errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
        return Result(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            errors=errors,
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
        )


def run(url: str, scenario: str, **options: object) -> Result:
    return Run(url, scenario, **options).result()  # type: ignore[arg-type]
