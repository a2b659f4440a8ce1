"""docs/benchmarks.md and docs/benchmarks.png from the figures bench/compare.py measured."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from wrk import Result

ROOT = Path(__file__).resolve().parents[1]
LATCHKEY = "latchkey (SQLite)"
POSTGRES = "latchkey (PostgreSQL, 2 instances)"
FLASK = "flask-jwt-extended"
BARE = "bare Starlette + PyJWT"
# docs/benchmarks.md is kept up to this line (the verification figures of bench/verify.py);
# what follows it is written anew by each run.
MARKER = "<!-- Written by bench/compare.py from here on; edits below are overwritten. -->"


@dataclass(frozen=True)
class Context:
    started: dt.datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    command: str
    seconds: float
    soak_seconds: float


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _source() -> str:
    dirty = _git("status", "--porcelain", "--", "src", "bench")
    state = "with local changes in src/ or bench/" if dirty else "`src/` and `bench/` clean"
    return f"`{_git('rev-parse', '--short', 'HEAD')}` ({state})"


def _cpu() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _memory() -> str:
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        kib = int(meminfo.readline().split()[1])
    return f"{kib / 1024 / 1024:.0f} GiB"


def _versions(*names: str) -> str:
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    return out.split("[", 1)[0].strip() or "wrk"


def _ok(good: bool) -> str:
    return "**met**" if good else "**not met**"


def _row(name: str, r: Result, flask: Result | None, bare: Result | None) -> str:
    to_flask = f"{r.rate / flask.rate:.2f}x" if flask and flask.rate else "—"
    to_bare = f"{r.rate / bare.rate:.2f}x" if bare and bare.rate else "—"
    return (
        f"| {name} | {r.rate:,.0f} | {to_flask} | {to_bare} | {r.p50_ms:.1f} | {r.p90_ms:.1f} "
        f"| {r.p99_ms:.1f} | {r.max_ms:.0f} | {r.requests:,} | {r.errors} |"
    )


TABLE_HEAD = [
    "| server | req/s | ÷ flask-jwt-extended | ÷ bare Starlette | p50 ms | p90 ms | p99 ms "
    "| max ms | requests | errors |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
]


def _table(results: dict[str, Result]) -> list[str]:
    flask, bare = results.get(FLASK), results.get(BARE)
    return [*TABLE_HEAD, *(_row(name, r, flask, bare) for name, r in results.items())]


RSS_WINDOW = 5.0  # seconds


def rss_floors(samples: list[tuple[float, int]], since: float = 10.0) -> list[int]:
    """The smallest resident size of each ``RSS_WINDOW`` from ``since`` on. Argon2id's working
    memory (64 MiB per hash in flight) exists only while a hash runs: glibc maps an allocation
    that large on its own and returns it when the hash ends. So one sample tells how many
    hashes ran at that instant; the floor of a window is what the workers keep."""
    windows: dict[int, int] = {}
    for second, kib in samples:
        if second >= since:
            index = int((second - since) // RSS_WINDOW)
            windows[index] = min(kib, windows.get(index, kib))
    return [windows[index] for index in sorted(windows)]


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(what, target, measured, met) for each target."""
    me, refresh = results["me"], results["refresh"]
    lk_me, lk_rf = me[LATCHKEY], refresh[LATCHKEY]
    me_flask, me_bare = lk_me.rate / me[FLASK].rate, lk_me.rate / me[BARE].rate
    rf_flask = lk_rf.rate / refresh[FLASK].rate
    login: Result = results["login"]
    idle, busy = results["me_idle"], results["me_busy"]
    pg_me, pg_rf = me[POSTGRES], refresh[POSTGRES]
    soak: dict[str, Result] = results["soak"]
    soak_errors = sum(r.errors for r in soak.values())
    soak_max = max(r.max_ms for r in soak.values())
    floors = rss_floors(results["rss"])
    drift = (max(floors) - floors[0]) / floors[0] if floors else 0.0
    low = (min(floors) - floors[0]) / floors[0] if floors else 0.0
    verify = results["verify"]
    v_ratio = verify["verifier_us"] / verify["raw_us"]
    return [
        (
            "`GET /auth/me`, 50 connections",
            "≥ 4x flask-jwt-extended, ≥ 0.5x bare, p99 ≤ 20 ms",
            f"{me_flask:.2f}x, {me_bare:.2f}x, p99 {lk_me.p99_ms:.1f} ms",
            me_flask >= 4 and me_bare >= 0.5 and lk_me.p99_ms <= 20,
        ),
        (
            "`POST /auth/refresh`, 20 chains",
            "≥ 4x flask-jwt-extended, p99 ≤ 50 ms, max ≤ 250 ms, 0 errors",
            f"{rf_flask:.2f}x, p99 {lk_rf.p99_ms:.1f} ms, max {lk_rf.max_ms:.0f} ms, "
            f"{lk_rf.errors} errors",
            rf_flask >= 4 and lk_rf.p99_ms <= 50 and lk_rf.max_ms <= 250 and lk_rf.errors == 0,
        ),
        (
            "logins",
            "≥ 0.9x what Argon2id allows (cores ÷ CPU s of one verify)",
            f"{login.rate:.1f}/s of {results['kdf_bound']:.1f}/s = "
            f"{login.rate / results['kdf_bound']:.2f}x, {login.errors} errors",
            login.rate >= 0.9 * results["kdf_bound"] and login.errors == 0,
        ),
        (
            "`/auth/me` while 20 logins run",
            "p99 ≤ 3x idle p99, throughput ≥ 0.5x idle",
            f"p99 {busy.p99_ms:.1f} ms vs {idle.p99_ms:.1f} ms = "
            f"{busy.p99_ms / idle.p99_ms:.2f}x; {busy.rate:,.0f}/s vs {idle.rate:,.0f}/s = "
            f"{busy.rate / idle.rate:.2f}x",
            busy.p99_ms <= 3 * idle.p99_ms and busy.rate >= 0.5 * idle.rate,
        ),
        (
            "PostgreSQL, 2 instances",
            "refresh and `/auth/me` ≥ the SQLite figures",
            f"me {pg_me.rate:,.0f}/s vs {lk_me.rate:,.0f}/s ({pg_me.rate / lk_me.rate:.2f}x); "
            f"refresh {pg_rf.rate:,.0f}/s vs {lk_rf.rate:,.0f}/s "
            f"({pg_rf.rate / lk_rf.rate:.2f}x)",
            pg_me.rate >= lk_me.rate and pg_rf.rate >= lk_rf.rate,
        ),
        (
            "mixed soak",
            "0 errors, no request over 1 s, worker RSS within ±10% from second 10",
            f"{soak_errors} errors, max {soak_max:.0f} ms, RSS floor {low:+.1%} / {drift:+.1%}",
            soak_errors == 0 and soak_max < 1000 and low >= -0.1 and drift <= 0.1,
        ),
        (
            "Verifier (bench/verify.py, RS256)",
            "≤ 1.3x the raw signature check",
            f"{verify['verifier_us']:.1f} µs vs {verify['raw_us']:.1f} µs = {v_ratio:.2f}x",
            v_ratio <= 1.3,
        ),
    ]


def markdown(context: Context, results: dict[str, Any]) -> str:
    lines = [
        MARKER,
        "",
        "## 2. latchkey beside its peers (`bench/compare.py`)",
        "",
        "Written by `bench/compare.py` (how it works: [bench/README.md](../bench/README.md)); "
        "every figure below comes from one run of it, on one machine, with the peers measured "
        "in the same run. Only ratios within one run count: the machine is shared. Each "
        "service runs two server processes; all sign with RS256 (2048-bit keys). What the "
        "service does to be fast, and what it keeps: [performance.md](performance.md).",
        "",
        "### Machine and run",
        "",
        "| | |",
        "|---|---|",
        f"| date (UTC) | {context.started:%Y-%m-%d %H:%M} |",
        f"| commit | {_source()} |",
        f"| command | `{context.command}` |",
        f"| CPU | {_cpu()}, {os.cpu_count()} cores |",
        f"| memory | {_memory()} |",
        f"| OS | {platform.platform()} |",
        f"| Python | {platform.python_version()} |",
        f"| load average before / after | {_load(context.load_before)} / "
        f"{_load(context.load_after)} |",
        f"| load generator | {_wrk_version()}, on the same machine, loopback |",
        "| libraries | "
        + _versions(
            "uvicorn",
            "uvloop",
            "httptools",
            "starlette",
            "SQLAlchemy",
            "asyncpg",
            "argon2-cffi",
            "cryptography",
            "PyJWT",
            "Flask",
            "Flask-JWT-Extended",
            "Flask-SQLAlchemy",
            "gunicorn",
        )
        + " |",
        "",
        "### Targets",
        "",
        "| what | target | measured | |",
        "|---|---|---|---|",
    ]
    for what, target, measured, met in targets(results):
        lines.append(f"| {what} | {target} | {measured} | {_ok(met)} |")
    lines += [
        "",
        "![Requests per second of each server, /me and refresh](benchmarks.png)",
        "",
        f"### `GET /me`, {50} connections, {context.seconds:g} s each",
        "",
        "latchkey verifies the token, confirms the session is live and returns the user; "
        "flask-jwt-extended verifies the token, looks its `jti` up in the blocklist and loads "
        "the user row; the bare app only verifies the token.",
        "",
        *_table(results["me"]),
        "",
        f"### `POST /refresh`, 20 chains, {context.seconds:g} s each",
        "",
        "Each chain sends its newest refresh token and waits for the next (one wrk thread and "
        "connection per chain). latchkey rotates the session's token (one conditional UPDATE); "
        "flask-jwt-extended inserts the old token's `jti` into its UNIQUE blocklist; the bare "
        "app signs a new pair and writes nothing.",
        "",
        *_table(results["refresh"]),
        "",
        "### latchkey alone",
        "",
        f"One Argon2id verify at the default parameters (t=3, 64 MiB, p=4) costs "
        f"{results['kdf_cpu'] * 1000:.0f} ms of CPU here, so {os.cpu_count()} cores allow "
        f"{results['kdf_bound']:.1f} logins/s.",
        "",
        *_table(
            {
                "logins, 8 connections": results["login"],
                "`/auth/me` idle, 50 connections": results["me_idle"],
                "`/auth/me` while 20 logins run": results["me_busy"],
                "those 20 logins": results["busy_logins"],
            }
        ),
        "",
        f"#### Mixed soak, {context.soak_seconds:g} s: `/auth/me` (20 connections), 10 refresh "
        "chains and logins (2 connections) at once, each connection waiting 20 ms before each "
        "request (500 ms for logins)",
        "",
        *_table({f"soak: {name}": r for name, r in results["soak"].items()}),
        "",
        "Resident memory of the two workers together, KiB, every 10 s: "
        + ", ".join(f"{kib:,} ({second:.0f} s)" for second, kib in results["rss"][9::10])
        + ". The smallest of each 5 s window from second 10 on (what the target compares; "
        "Argon2id's 64 MiB per hash in flight comes and goes with each login): "
        + ", ".join(f"{kib:,}" for kib in rss_floors(results["rss"]))
        + ".",
        "",
    ]
    return "\n".join(lines)


def write(path: Path, text: str) -> None:
    """Replace what follows :data:`MARKER` in ``path`` (or append, the first time)."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    kept = old.split(MARKER, 1)[0].rstrip("\n")
    path.write_text(f"{kept}\n\n{text}")


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["me"])
    colors = ["#1f6feb" if name.startswith("latchkey") else "#8b949e" for name in names]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, key, title in (
        (axes[0], "me", "GET /me, 50 connections"),
        (axes[1], "refresh", "POST /refresh, 20 chains"),
    ):
        rates = [results[key][name].rate for name in names]
        flask = results[key][FLASK].rate
        bars = axis.barh(names, rates, color=colors)
        for bar, rate in zip(bars, rates, strict=True):
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {rate:,.0f}/s ({rate / flask:.1f}x flask)",
                va="center",
                fontsize=8,
            )
        axis.set_title(title)
        axis.set_xlabel("requests per second (more is better)")
        axis.invert_yaxis()
        axis.set_xlim(0, max(rates) * 1.45)
    axes[1].set_yticklabels([])
    figure.suptitle("latchkey and its peers, 2 server processes each, wrk on loopback")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
