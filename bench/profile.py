"""Where one latchkey worker spends its time under load: py-spy samples a single
``latchkey serve`` worker (SQLite) while wrk drives one route, and the script prints the
functions that took the most samples, by own time and by time including callees.

    .venv/bin/python bench/profile.py me|refresh|login [--seconds 10] [--rate 100]
    [--flamegraph out.svg]

``py-spy`` needs to be allowed to read another process's memory (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import servers
import wrk

CONNECTIONS = {"me": 50, "refresh": 20, "login": 4}


def _frame(text: str) -> str:
    """``function file`` from py-spy's ``function (path/file.py:line)``."""
    name, _, where = text.partition(" (")
    return f"{name} {where.rsplit('/', 1)[-1].split(':', 1)[0]}"


def summarize(raw: Path, top: int) -> list[str]:
    """Share of the samples per thread, and per function by own and inclusive samples,
    from py-spy's collapsed stacks (``--threads``: each stack starts with its thread)."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        _thread, *frames = stack.split(";")
        frames = [_frame(frame) for frame in frames] or ["(no Python frame)"]
        total += count
        # The event loop's thread runs cli.py's main; the others are driver or hash threads.
        loop = any(frame.startswith("cmd_serve") for frame in frames)
        threads["event loop thread" if loop else f"other: {frames[-1]}"] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("threads", threads), ("own time", own), ("with callees", inclusive)):
        lines.append(f"\n{title}:")
        for frame, count in counter.most_common(top):
            lines.append(f"{100 * count / total:5.1f}%  {frame}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("route", choices=sorted(CONNECTIONS))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--idle", action="store_true", help="count idle (waiting) samples too")
    parser.add_argument("--flamegraph", type=Path, help="also write an SVG flame graph")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    workdir = Path(tempfile.mkdtemp(prefix="latchkey-profile-"))
    service = servers.latchkey("latchkey", workdir, 20, workers=1)
    try:
        asyncio.run(service.wait_up())
        pairs = asyncio.run(service.sessions(20))
        key = "access_token" if args.route == "me" else "refresh_token"
        (workdir / "tokens.txt").write_text("\n".join(p[key] for p in pairs) + "\n")
        (workdir / "users.txt").write_text(
            "\n".join(f"{n}\t{p}" for n, p in sorted(service.passwords.items())) + "\n"
        )
        env = {
            "WRK_TOKENS": str(workdir / "tokens.txt"),
            "WRK_USERS": str(workdir / "users.txt"),
            "WRK_REFRESH_MODE": "body",
        }
        path = {"me": "/auth/me", "refresh": "/auth/refresh", "login": "/auth/login"}[args.route]
        connections = CONNECTIONS[args.route]
        threads = connections if args.route == "refresh" else 1
        load = wrk.Run(
            service.urls[0] + path,
            args.route,
            connections=connections,
            threads=threads,
            seconds=args.seconds + 3,
            env=env,
        )
        time.sleep(1.5)
        raw = workdir / "profile.txt"
        pid = service.processes[0].workers()[0]
        record = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(args.seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--threads",
        ]
        if args.idle:
            record.append("--idle")
        subprocess.run(
            [*record, "--format", "raw", "--output", str(raw)], check=True, capture_output=True
        )
        if args.flamegraph:
            subprocess.run(
                [*record, "--output", str(args.flamegraph)], check=True, capture_output=True
            )
        result = load.result()
        print(
            f"{args.route}: {result.rate:.0f} req/s, p99 {result.p99_ms:.1f} ms, "
            f"{result.errors} errors (while being profiled)"
        )
        print("\n".join(summarize(raw, args.top)))
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
