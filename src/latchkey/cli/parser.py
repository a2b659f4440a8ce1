"""The ``latchkey`` command line: every command, its arguments and its help."""

from __future__ import annotations

import argparse

from .backup import cmd_backup, cmd_restore
from .check import cmd_check
from .common import since
from .keys import (
    cmd_clients_add,
    cmd_clients_list,
    cmd_clients_remove,
    cmd_keys_list,
    cmd_keys_rotate,
    cmd_keys_secret,
)
from .serve import cmd_migrate, cmd_serve
from .sessions import cmd_audit, cmd_sessions_list, cmd_sessions_revoke
from .users import (
    cmd_user_add,
    cmd_user_delete,
    cmd_user_disable,
    cmd_user_enable,
    cmd_user_list,
    cmd_user_set_password,
    cmd_user_update,
)


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

    check = commands.add_parser(
        "check",
        help="check the configuration: one line per problem, exit 1 on any error",
        description="Read the configuration as `latchkey serve` does and report each problem "
        "on one line: error or warning, an id, what is wrong, and the fix. Exit status 1 on "
        "any error. Give the --host, --port and --workers that serve runs with. See "
        'docs/deployment.md, "Checking a configuration".',
    )
    check.add_argument(
        "--deploy",
        action="store_true",
        help="add the rules for production (https, file modes, rotation, Argon2id, ...)",
    )
    check.add_argument("--host", default="127.0.0.1", help="serve's --host (default 127.0.0.1)")
    check.add_argument("--port", type=int, default=8000, help="serve's --port (default 8000)")
    check.add_argument("--workers", type=int, default=1, help="serve's --workers (default 1)")
    check.add_argument(
        "--instances",
        type=int,
        default=1,
        help="how many machines serve this database (default 1)",
    )
    check.set_defaults(func=cmd_check)

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
    update = user.add_parser(
        "update",
        help="change a user's scope or name; sessions keep running",
        description="Change a user's scope and/or name (audited). A narrowed scope is cut from "
        "every live session: each one's next refresh grants no more, and the access tokens "
        "already issued keep theirs until they expire (at most LATCHKEY_ACCESS_TTL). A wider "
        "scope is granted at the next login. A new name is the one to log in with; /auth/me "
        "shows it within a minute. See docs/sessions.md.",
    )
    update.add_argument("username")
    update.add_argument("--scope", help='the new space-separated scopes, e.g. "read write"')
    update.add_argument("--username", dest="new_username", metavar="NEW", help="the new name")
    update.set_defaults(func=cmd_user_update)

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
    audit.add_argument(
        "--user",
        metavar="USER",
        help="only this user's events: a username, or a user id (also of a deleted or "
        "renamed user)",
    )
    audit.add_argument(
        "--since", type=since, metavar="WHEN", help="e.g. 24h, 7d or 2026-11-28T09:30 (UTC)"
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

    backup = commands.add_parser(
        "backup",
        help="write a consistent snapshot of the database to a file (mode 0600)",
        description="Write every row of the database to PATH, read in one transaction: a "
        "consistent snapshot while the service runs. The file (gzip, JSON lines, one format "
        "for SQLite and PostgreSQL) holds password hashes and sealed signing keys, and is "
        'bound to LATCHKEY_SECRET_KEY. See docs/deployment.md, "Backup and restore".',
    )
    backup.add_argument("path", metavar="PATH")
    backup.set_defaults(func=cmd_backup)
    restore = commands.add_parser(
        "restore",
        help="load a backup into an empty database (SQLite or PostgreSQL)",
        description="Load the backup at PATH into the configured database, which must be "
        "empty (new, or before latchkey serve first started on it), in one transaction, then "
        "migrate it to this version's schema. It needs the LATCHKEY_SECRET_KEY (and "
        "LATCHKEY_REFRESH_SECRET, if set) of the service that made the backup: sessions keep "
        "refreshing and access tokens keep verifying. A damaged file, a newer format or "
        "another secret is refused, and nothing is written.",
    )
    restore.add_argument("path", metavar="PATH")
    restore.set_defaults(func=cmd_restore)

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
