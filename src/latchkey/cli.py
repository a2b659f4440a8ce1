"""The ``latchkey`` command: it only translates argv into service calls."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import getpass
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from .adapters.keyfiles import new_secret
from .bootstrap import Container, build
from .core.errors import LatchkeyError
from .core.keyring import KeyState, KeyStatus
from .core.sessions import Session
from .settings import Settings, describe_error

T = TypeVar("T")


class CommandError(Exception):
    """Stops the command with one line on stderr and exit status 2."""


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CommandError(describe_error(exc)) from None


def _run(work: Callable[[Container], Awaitable[T]], *, migrate: bool = False) -> T:
    """Build the services, run ``work``, close. Only ``migrate`` (``latchkey migrate`` and
    ``serve``) changes the schema; every other command needs it current."""

    async def run() -> T:
        container = build(_settings())
        try:
            if migrate:
                await container.migrate()
            else:
                await container.require_schema()
            return await work(container)
        finally:
            await container.close()

    return asyncio.run(run())


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# --- commands ------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .web.server import NoDelayH11Protocol

    settings = _settings()

    async def setup(container: Container) -> None:
        return None

    _run(setup, migrate=True)  # keys and schema exist before any worker starts
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
    async def work(container: Container) -> None:
        return None

    _run(work, migrate=True)
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
    user = _run(lambda c: c.accounts.add_user(args.username, password, args.scope))
    print(f"created user {user.username} ({user.id})")


def cmd_user_list(_args: argparse.Namespace) -> None:
    users = _run(lambda c: c.accounts.list_users())
    print(f"{'USERNAME':<24} {'ID':<32}  {'CREATED':<20}  {'STATE':<8}  SCOPE")
    for user in users:
        state = "active" if user.disabled_at is None else "disabled"
        print(
            f"{user.username:<24} {user.id:<32}  {_when(user.created_at):<20}  {state:<8}  "
            f"{user.scope}"
        )


def _ended(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'} revoked"


def cmd_user_disable(args: argparse.Namespace) -> None:
    revoked = _run(lambda c: c.accounts.set_disabled(args.username, disabled=True))
    print(f"disabled user {args.username}; {_ended(len(revoked))}")


def cmd_user_enable(args: argparse.Namespace) -> None:
    _run(lambda c: c.accounts.set_disabled(args.username, disabled=False))
    print(f"enabled user {args.username}")


def cmd_user_delete(args: argparse.Namespace) -> None:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("deleting a user cannot be undone: confirm with --yes")
        if input(f"Type {args.username!r} to delete this user for good: ") != args.username:
            raise CommandError("not deleted")
    revoked = _run(lambda c: c.accounts.delete_user(args.username))
    print(f"deleted user {args.username}; {_ended(len(revoked))}")


def cmd_user_set_password(args: argparse.Namespace) -> None:
    password = _read_password(args)
    revoked = _run(lambda c: c.accounts.set_password(args.username, password))
    print(f"password of {args.username} changed; {_ended(len(revoked))}")


def cmd_sessions_list(args: argparse.Namespace) -> None:
    async def work(container: Container) -> list[tuple[Session, str]]:
        sessions = await container.sessions.list_sessions(args.username, include_ended=args.all)
        names = {user.id: user.username for user in await container.accounts.list_users()}
        return [(session, names.get(session.user_id, "?")) for session in sessions]

    rows = _run(work)
    print(
        f"{'SID':<32}  {'USER':<20} {'CREATED':<20}  {'LAST USED':<20}  {'STATE':<27} "
        f"{'ADDRESS':<16} USER AGENT"
    )
    now = time.time()
    for session, username in rows:
        if session.revoked_at is not None:
            state = f"revoked: {session.revoked_reason}"
        elif not session.is_live(now):
            state = "expired"
        else:
            state = "live"
        print(
            f"{session.sid:<32}  {username:<20} {_when(session.created_at):<20}  "
            f"{_when(session.last_used_at):<20}  {state:<27} {session.address or '-':<16} "
            f"{_printable(session.user_agent or '-')}"
        )


def cmd_sessions_revoke(args: argparse.Namespace) -> None:
    if (args.sid is None) == (args.user is None):
        raise CommandError("give either a session id or --user USERNAME")
    if args.user is not None:
        revoked = _run(lambda c: c.sessions.revoke_sessions_of(args.user))
        print(f"{_ended(len(revoked))} of {args.user}")
    else:
        if _run(lambda c: c.sessions.revoke_session(args.sid)):
            print(f"session {args.sid} revoked")
        else:
            print(f"session {args.sid} was revoked already")


def _since(text: str) -> float:
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


def cmd_audit(args: argparse.Namespace) -> None:
    events = _run(lambda c: c.audit.trail(username=args.user, since=args.since, limit=args.limit))
    if args.json:
        for event in reversed(events):
            print(json.dumps({"time": _when(event.at), **event.log_fields()}))
        return
    print(f"{'TIME':<20}  {'EVENT':<16} {'USER':<20} {'SESSION':<32}  {'ADDRESS':<16} REASON")
    for event in reversed(events):  # oldest first, as a log reads
        who = event.username or event.user_id or "-"
        print(
            f"{_when(event.at):<20}  {event.kind.value:<16} {who:<20} {event.sid or '-':<32}  "
            f"{event.address or '-':<16} {event.reason or ''}"
        )


def _printable(text: str) -> str:
    """A user agent is whatever the client sent: no terminal escapes on the operator's screen."""
    return "".join(c if c.isprintable() else "?" for c in text)[:80]


def _maybe_when(timestamp: float | None) -> str:
    return "-" if timestamp is None else _when(timestamp)


def cmd_keys_list(_args: argparse.Namespace) -> None:
    async def work(container: Container) -> list[KeyStatus]:
        await container.keys.load()
        return container.keys.ring.status()

    statuses = _run(work)
    print(
        f"{'KID':<44} {'ALG':<6} {'STATE':<10} {'CREATED':<20}  {'ACTIVATES':<20}  "
        f"{'RETIRES':<20}  DROPPED AFTER"
    )
    for status in statuses:
        key = status.key
        print(
            f"{key.kid:<44} {key.alg:<6} {status.state.value:<10} {_when(key.created_at):<20}  "
            f"{_when(key.activates_at):<20}  {_maybe_when(status.retires_at):<20}  "
            f"{_maybe_when(status.dropped_after)}"
        )


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    if args.drop_previous and not args.immediately:
        raise CommandError("--drop-previous needs --immediately (the new key must sign now)")

    async def work(container: Container) -> tuple[str, list[KeyStatus], float]:
        await container.keys.load()
        kid = await container.keys.rotate(
            immediately=args.immediately, drop_previous=args.drop_previous
        )
        return kid, container.keys.ring.status(), container.clock.now()

    kid, statuses, now = _run(work)
    new = next(status for status in statuses if status.key.kid == kid)
    wait = new.key.activates_at - now
    signs = f"from {_when(new.key.activates_at)} (in {wait:.0f} s)" if wait > 0 else "now"
    print(f"new key {kid} ({new.key.alg}): published now, signs {signs}")
    for status in statuses:
        key = status.key
        if key.kid == kid:
            continue
        if status.published and status.retires_at is not None:
            print(
                f"key {key.kid}: signs until {_when(status.retires_at)}, "
                f"published until {_maybe_when(status.dropped_after)}"
            )
        elif status.state is KeyState.WITHDRAWN and (key.retired_at or 0) >= new.key.created_at:
            print(f"key {key.kid}: withdrawn now, the tokens it signed are refused")


def cmd_keys_secret(_args: argparse.Namespace) -> None:
    print(new_secret())


def cmd_clients_add(args: argparse.Namespace) -> None:
    client, secret = _run(lambda c: c.oauth.add_client(args.name))
    print(f"client_id: {client.id}\nclient_secret: {secret}")
    print(f"latchkey: registered {client.name}; the secret is not shown again", file=sys.stderr)


def cmd_clients_list(_args: argparse.Namespace) -> None:
    clients = _run(lambda c: c.oauth.list_clients())
    print(f"{'CLIENT ID':<32}  {'CREATED':<20}  NAME")
    for client in clients:
        print(f"{client.id:<32}  {_when(client.created_at):<20}  {_printable(client.name)}")


def cmd_clients_remove(args: argparse.Namespace) -> None:
    _run(lambda c: c.oauth.remove_client(args.client_id))
    print(f"removed client {args.client_id}")


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
    for name, func, text in (
        ("disable", cmd_user_disable, "disable a user and revoke all their sessions"),
        ("enable", cmd_user_enable, "enable a disabled user"),
    ):
        action = user.add_parser(name, help=text)
        action.add_argument("username")
        action.set_defaults(func=func)
    delete = user.add_parser("delete", help="delete a user and revoke all their sessions")
    delete.add_argument("username")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    delete.set_defaults(func=cmd_user_delete)
    set_password = user.add_parser(
        "set-password", help="set a new password and revoke all the user's sessions"
    )
    set_password.add_argument("username")
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from one line of standard input",
    )
    set_password.set_defaults(func=cmd_user_set_password)

    sessions = commands.add_parser("sessions", help="sessions (logins)").add_subparsers(
        dest="sessions_command", required=True, metavar="ACTION"
    )
    listing = sessions.add_parser("list", help="list live sessions, of one user or all")
    listing.add_argument("username", nargs="?")
    listing.add_argument("--all", action="store_true", help="include revoked and expired ones")
    listing.set_defaults(func=cmd_sessions_list)
    revoke = sessions.add_parser("revoke", help="revoke one session, or every one of a user")
    revoke.add_argument("sid", nargs="?")
    revoke.add_argument("--user", metavar="USERNAME", help="revoke every session of this user")
    revoke.set_defaults(func=cmd_sessions_revoke)

    audit = commands.add_parser("audit", help="show the audit trail, oldest first")
    audit.add_argument("--user", metavar="USERNAME", help="only this user's events")
    audit.add_argument(
        "--since", type=_since, metavar="WHEN", help="e.g. 24h, 7d or 2026-11-28T09:30 (UTC)"
    )
    audit.add_argument("--limit", type=int, default=1000, help="at most this many (newest)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=cmd_audit)

    keys = commands.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    keys.add_parser(
        "list", help="list keys: state (pending, signing, retiring, dropped) and their dates"
    ).set_defaults(func=cmd_keys_list)
    rotate = keys.add_parser(
        "rotate",
        help="add a new signing key: published now, signing after LATCHKEY_KEY_PREPUBLISH",
        description="Add a new key of LATCHKEY_SIGNING_ALG. It is in the JWKS at once and signs "
        "from LATCHKEY_KEY_PREPUBLISH on; the key it replaces verifies until the tokens it "
        "signed have expired. Running servers pick it up without a restart. See docs/keys.md.",
    )
    rotate.add_argument(
        "--immediately",
        action="store_true",
        help="sign with it now (after a key compromise): APIs whose JWKS cache predates it "
        "refuse its tokens until they refetch",
    )
    rotate.add_argument(
        "--drop-previous",
        action="store_true",
        help="with --immediately: withdraw every other key now; the access tokens they "
        "signed are refused at once (clients refresh to get new ones)",
    )
    rotate.set_defaults(func=cmd_keys_rotate)
    keys.add_parser("secret", help="print a new random value for LATCHKEY_SECRET_KEY").set_defaults(
        func=cmd_keys_secret
    )

    clients = commands.add_parser(
        "clients", help="resource servers allowed to introspect tokens"
    ).add_subparsers(dest="clients_command", required=True, metavar="ACTION")
    add_client = clients.add_parser("add", help="register one; prints its id and secret once")
    add_client.add_argument("name", help="what it is, e.g. billing-api")
    add_client.set_defaults(func=cmd_clients_add)
    clients.add_parser("list", help="list them (never their secrets)").set_defaults(
        func=cmd_clients_list
    )
    remove_client = clients.add_parser("remove", help="remove one: its secret stops working")
    remove_client.add_argument("client_id")
    remove_client.set_defaults(func=cmd_clients_remove)
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
    except BrokenPipeError:
        # `latchkey audit | head`: the reader left. Point stdout at devnull so that the
        # interpreter's final flush does not fail again (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
