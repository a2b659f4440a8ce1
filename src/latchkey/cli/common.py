"""What every command shares: settings, the services built for one command, and how values
are shown (times in UTC, text made safe for a terminal)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import ValidationError

from ..bootstrap import Container, build
from ..core.errors import SchemaBehind, ServiceUnavailable
from ..settings import Settings, describe_error

T = TypeVar("T")


class CommandError(Exception):
    """Stops the command with one line on stderr and exit status 2."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CommandError(describe_error(exc)) from None


def run(
    work: Callable[[Container], Awaitable[T]],
    *,
    migrate: bool = False,
    changes: bool = False,
    restore: bool = False,
) -> T:
    """Build the services, run ``work``, close. Only ``migrate`` (``latchkey migrate`` and
    ``serve``) makes a database or changes the schema; every other command needs an existing
    database with the current schema, and creates nothing (no data directory, no secret).
    ``restore``: the database may be missing (it is made, empty) and without a schema.
    ``changes``: after ``work``, say on stderr which database it changed."""
    settings = load_settings()

    async def run() -> T:
        container = build(settings, create=migrate or restore)
        try:
            if migrate:
                await container.migrate()
            elif not restore:
                try:
                    await container.require_schema()
                except SchemaBehind as exc:
                    raise CommandError(f"{settings.database_label}: {exc.description}") from None
            return await work(container)
        finally:
            await container.close()

    try:
        result = asyncio.run(run())
    except ServiceUnavailable as exc:
        raise CommandError(f"{settings.database_label}: {exc.description}") from None
    if changes:
        print(f"latchkey: database {settings.database_label}", file=sys.stderr)
    return result


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        # As `docker login --password-stdin`: the trailing newline is not part of it.
        password = line[:-1] if line.endswith("\n") else line
        return password[:-1] if password.endswith("\r") else password
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for a password: use --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise CommandError("the passwords do not match")
    return password


def ended(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'} revoked"


def since(text: str) -> float:
    """``7d``, ``12h``, ``30m`` (ago) or an ISO 8601 date or time (UTC unless it says)."""
    match = re.fullmatch(r"([0-9]{1,6})([smhd])", text.strip())
    if match:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return time.time() - int(match[1]) * unit
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected e.g. 7d, 12h, 30m, 2026-11-28 or 2026-11-28T09:30"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def printable(text: str) -> str:
    """A user agent is whatever the client sent: no terminal escapes on the operator's screen."""
    return "".join(c if c.isprintable() else "?" for c in text)[:80]


def maybe_when(timestamp: float | None) -> str:
    return "-" if timestamp is None else when(timestamp)
