"""The ``latchkey`` command: it only translates argv into service calls."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import getpass
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from .bootstrap import build_service, prepare
from .core.errors import LatchkeyError
from .keystore import new_secret
from .service import AuthService
from .settings import Settings, describe_error

T = TypeVar("T")


class CommandError(Exception):
    """Stops the command with one line on stderr and exit status 2."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CommandError(describe_error(exc)) from None


def _with_service(work: Callable[[AuthService], Awaitable[T]]) -> T:
    async def run() -> T:
        service = build_service(_settings())
        try:
            await prepare(service)
            return await work(service)
        finally:
            await service.close()

    return asyncio.run(run())


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- commands ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .web.server import NoDelayH11Protocol

    settings = _settings()

    async def setup(service: AuthService) -> None:
        return None

    _with_service(setup)  # keys and schema exist before any worker starts
    print(
        f"latchkey: serving {settings.issuer} on http://{args.host}:{args.port} "
        f"(database {settings.database_url})",
        file=sys.stderr,
    )
    if args.workers > 1:
        # Workers count into files here, and /metrics sums them (prometheus-client's
        # multiprocess mode, chosen at import, hence set before the workers start).
        metrics_dir = Path(tempfile.mkdtemp(prefix="latchkey-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    uvicorn.run(
        "latchkey.web.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        http=NoDelayH11Protocol,
        log_level=settings.log_level,
        server_header=False,
    )


def cmd_migrate(_args: argparse.Namespace) -> None:
    async def work(service: AuthService) -> None:
        return None

    _with_service(work)
    print("latchkey: database schema is up to date")


def _read_password(args: argparse.Namespace) -> str:
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


def cmd_user_add(args: argparse.Namespace) -> None:
    password = _read_password(args)
    user = _with_service(lambda service: service.add_user(args.username, password, args.scope))
    print(f"created user {user.username} ({user.id})")


def cmd_user_list(_args: argparse.Namespace) -> None:
    users = _with_service(lambda service: service.list_users())
    print(f"{'USERNAME':<24} {'ID':<32}  {'CREATED':<20}  SCOPE")
    for user in users:
        print(f"{user.username:<24} {user.id:<32}  {_when(user.created_at):<20}  {user.scope}")


def cmd_keys_list(_args: argparse.Namespace) -> None:
    async def work(service: AuthService) -> list[tuple[str, str, str, str]]:
        now = service.clock.now()
        signing = service.keys.signing.kid
        rows = []
        for key in sorted(service.keys.stored, key=lambda k: k.created_at):
            if key.kid == signing:
                state = "signing"
            elif key.activates_at > now:
                state = "pending"
            else:
                state = "published"
            rows.append((key.kid, key.alg, state, _when(key.created_at)))
        return rows

    print(f"{'KID':<44} {'ALG':<6} {'STATE':<10} CREATED")
    for kid, alg, state, created in _with_service(work):
        print(f"{kid:<44} {alg:<6} {state:<10} {created}")


def cmd_keys_secret(_args: argparse.Namespace) -> None:
    print(new_secret())


# --- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latchkey",
        description="Token authentication for Web APIs. Settings come from LATCHKEY_* "
        "environment variables and .env.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(func=cmd_serve)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=cmd_migrate)

    user = commands.add_parser("user", help="manage users").add_subparsers(
        dest="user_command", required=True, metavar="ACTION"
    )
    add = user.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from one line of standard input",
    )
    add.add_argument("--scope", default="", help='space-separated scopes, e.g. "read write"')
    add.set_defaults(func=cmd_user_add)
    user.add_parser("list", help="list users").set_defaults(func=cmd_user_list)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    keys.add_parser("list", help="list keys").set_defaults(func=cmd_keys_list)
    keys.add_parser("secret", help="print a new random value for LATCHKEY_SECRET_KEY").set_defaults(
        func=cmd_keys_secret
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CommandError, LatchkeyError) as exc:
        message = exc.description if isinstance(exc, LatchkeyError) else str(exc)
        print(f"latchkey: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
