"""The administrator's commands, run in-process through ``latchkey.cli.main`` on SQLite:
``user disable|enable|delete|set-password``, ``sessions list|revoke`` and ``audit``.

Sessions are made with the service itself, built as the CLI builds it (same environment).
Every command's stdout and stderr are checked for the passwords and tokens in play.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from latchkey.bootstrap import Container, build
from latchkey.cli import main
from latchkey.core.audit import AuditEvent, AuditKind
from latchkey.core.errors import (
    AccountDisabled,
    InvalidCredentials,
    LatchkeyError,
    SessionRevoked,
)
from latchkey.services import ClientInfo, TokenPair
from latchkey.settings import Settings
from support import Cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from seeding import seed_sessions

T = TypeVar("T")

PASSWORD = "a long unusual passphrase"
NEW_PASSWORD = "another rather long phrase"
AGENT = "pytest-admin-agent"
ADDRESS = "192.0.2.10"


class AdminCli(Cli):
    """The in-process command, plus sessions made with the services themselves."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
        super().__init__(monkeypatch, capsys)
        self.secrets |= {PASSWORD, NEW_PASSWORD}

    def add_user(self, username: str, password: str = PASSWORD) -> None:
        out = self.ok("user", "add", username, "--password-stdin", stdin=password + "\n")
        assert out.startswith(f"created user {username} ")

    # --- the service, in-process ------------------------------------------------------

    def with_service(self, work: Callable[[Container], Awaitable[T]]) -> T:
        async def run() -> T:
            services = build(Settings(_env_file=None))  # type: ignore[call-arg]
            try:
                await services.migrate()
                return await work(services)
            finally:
                await services.close()

        return asyncio.run(run())

    def login(self, username: str, password: str = PASSWORD) -> TokenPair:
        client = ClientInfo(user_agent=AGENT, address=ADDRESS)
        pair = self.with_service(lambda services: services.tokens.login(username, password, client))
        self.secrets |= {pair.access_token, pair.refresh_token}
        return pair

    def login_error(self, username: str, password: str = PASSWORD) -> type[LatchkeyError]:
        try:
            self.login(username, password)
        except LatchkeyError as exc:
            return type(exc)
        raise AssertionError(f"{username} could log in")

    def refresh_error(self, pair: TokenPair) -> type[LatchkeyError]:
        try:
            self.with_service(lambda services: services.tokens.refresh(pair.refresh_token))
        except LatchkeyError as exc:
            return type(exc)
        raise AssertionError("the refresh token still works")

    def sid(self, pair: TokenPair) -> str:
        async def verify(services: Container) -> str:
            return services.tokens.verify_access_token(pair.access_token)["sid"]

        return self.with_service(verify)


@pytest.fixture
def cli(
    migrated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> AdminCli:
    return AdminCli(monkeypatch, capsys)


def _rows(out: str) -> list[list[str]]:
    """The table's rows (after the header), split on white space."""
    lines = out.splitlines()
    return [line.split() for line in lines[1:]]


def _user_state(cli: AdminCli, username: str) -> str | None:
    out = cli.ok("user", "list")
    assert out.splitlines()[0].split() == ["USERNAME", "ID", "CREATED", "STATE", "SCOPE"]
    for row in _rows(out):
        if row[0] == username:
            return row[4]  # USERNAME ID DATE TIME STATE [SCOPE]
    return None


def _sessions(cli: AdminCli, *argv: str) -> dict[str, str]:
    """``sessions list ARGV`` as {sid: "USER STATE"}."""
    out = cli.ok("sessions", "list", *argv)
    assert out.splitlines()[0].split()[:2] == ["SID", "USER"]
    table = {}
    for line in out.splitlines()[1:]:
        # SID USER CREATED(2 words) LAST-USED(2 words) STATE ADDRESS USER-AGENT
        sid, user, *_, state = line.split()[:7]
        if state == "revoked:":
            state = " ".join(line.split()[6:8])
        table[sid] = f"{user} {state}"
        assert line.endswith(f" {ADDRESS:<16} {AGENT}")
    return table


# --- user disable / enable / delete ------------------------------------------------------------


def test_disable_revokes_and_blocks_login_then_enable_restores(cli: AdminCli) -> None:
    """disable: `user list` says disabled, the session is revoked (refresh → AccountDisabled),
    login with the right password → AccountDisabled; enable: active again, login works."""
    cli.add_user("alice")
    pair = cli.login("alice")
    assert _user_state(cli, "alice") == "active"

    assert cli.ok("user", "disable", "alice") == "disabled user alice; 1 session revoked\n"
    assert _user_state(cli, "alice") == "disabled"
    assert cli.login_error("alice") is AccountDisabled
    assert cli.login_error("alice", "wrong password!") is InvalidCredentials
    assert cli.refresh_error(pair) is AccountDisabled
    assert _sessions(cli, "alice", "--all") == {cli.sid(pair): "alice revoked: user_disabled"}

    assert cli.ok("user", "enable", "alice") == "enabled user alice\n"
    assert _user_state(cli, "alice") == "active"
    cli.login("alice")
    assert cli.refresh_error(pair) is SessionRevoked  # enabling brings no session back


def test_disable_without_sessions_and_twice(cli: AdminCli) -> None:
    """Counts are worded for zero sessions; disabling twice is harmless."""
    cli.add_user("alice")
    assert cli.ok("user", "disable", "alice") == "disabled user alice; 0 sessions revoked\n"
    assert cli.ok("user", "disable", "alice") == "disabled user alice; 0 sessions revoked\n"
    assert _user_state(cli, "alice") == "disabled"


def test_delete_needs_yes_without_a_terminal(cli: AdminCli) -> None:
    """Without a terminal and without --yes nothing is deleted; with --yes the user and
    their sessions are gone."""
    cli.add_user("alice")
    cli.add_user("bob")
    pairs = [cli.login("alice"), cli.login("alice")]

    err = cli.fails("user", "delete", "alice", stdin="alice\n")
    assert "--yes" in err
    assert _user_state(cli, "alice") == "active"
    assert len(_sessions(cli, "alice")) == 2

    assert cli.ok("user", "delete", "alice", "--yes") == "deleted user alice; 2 sessions revoked\n"
    assert _user_state(cli, "alice") is None
    assert _user_state(cli, "bob") == "active"
    assert cli.login_error("alice") is InvalidCredentials
    for pair in pairs:
        assert cli.refresh_error(pair) is SessionRevoked
    assert cli.fails("user", "delete", "alice", "--yes") == "latchkey: No user named 'alice'.\n"
    # A deleted user's audit trail can still be read by the name it had.
    kinds = [row.split()[2] for row in cli.ok("audit", "--user", "ALICE").splitlines()[1:]]
    assert kinds[0] == "user_created" and "user_deleted" in kinds and "login_ok" in kinds
    assert kinds.count("sessions_revoked") == 1  # one event for every session at once


# --- user set-password ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("password123", "too common"),
        ("qwertyuiop", "too common"),
        ("short", "at least 8 characters"),
        ("my-alice-password", "must not be the username or contain it"),
        ("LatchKey", "name of this service"),
    ],
)
def test_set_password_applies_the_policy(cli: AdminCli, password: str, rule: str) -> None:
    """A password the policy refuses: exit 2, one line naming the rule, never the password;
    the old password still works and no session is revoked."""
    cli.add_user("alice")
    cli.login("alice")
    cli.secrets.add(password)
    err = cli.fails("user", "set-password", "alice", "--password-stdin", stdin=password + "\n")
    assert rule in err
    cli.login("alice")
    assert len(_sessions(cli, "alice")) == 2


def test_set_password_changes_it_and_revokes_every_session(cli: AdminCli) -> None:
    """The new password (one stdin line, no newline) works, the old does not; every session
    of the user is revoked with reason password_changed; other users are untouched."""
    cli.add_user("alice")
    cli.add_user("bob")
    alice = [cli.login("alice"), cli.login("alice")]
    bob = cli.login("bob")

    out = cli.ok("user", "set-password", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert out == "password of alice changed; 2 sessions revoked\n"
    assert cli.login_error("alice", PASSWORD) is InvalidCredentials
    cli.login("alice", NEW_PASSWORD)
    for pair in alice:
        assert cli.refresh_error(pair) is SessionRevoked
    ended = _sessions(cli, "alice", "--all")
    assert {ended[cli.sid(pair)] for pair in alice} == {"alice revoked: password_changed"}
    assert _sessions(cli, "bob") == {cli.sid(bob): "bob live"}


def test_set_password_without_terminal_asks_for_stdin_flag(cli: AdminCli) -> None:
    """No terminal, no --password-stdin: refused instead of hanging."""
    cli.add_user("alice")
    assert "--password-stdin" in cli.fails("user", "set-password", "alice", stdin=NEW_PASSWORD)


# --- sessions list / revoke ----------------------------------------------------------------


def test_sessions_list_revoke_one_and_all_of_a_user(cli: AdminCli) -> None:
    """`sessions list` shows live sessions (of one user with USERNAME), `--all` adds the
    revoked ones with their reason; `revoke SID` ends one, `revoke --user` all of a user."""
    cli.add_user("alice")
    cli.add_user("bob")
    a1, a2, b1 = cli.login("alice"), cli.login("alice"), cli.login("bob")
    s_a1, s_a2, s_b1 = cli.sid(a1), cli.sid(a2), cli.sid(b1)

    assert _sessions(cli) == {s_a1: "alice live", s_a2: "alice live", s_b1: "bob live"}
    assert _sessions(cli, "alice") == {s_a1: "alice live", s_a2: "alice live"}
    assert _sessions(cli, "BOB") == {s_b1: "bob live"}  # usernames are case-insensitive

    assert cli.ok("sessions", "revoke", s_a1) == f"session {s_a1} revoked\n"
    assert cli.refresh_error(a1) is SessionRevoked
    assert _sessions(cli, "alice") == {s_a2: "alice live"}
    assert _sessions(cli, "alice", "--all") == {
        s_a1: "alice revoked: admin",
        s_a2: "alice live",
    }

    assert cli.ok("sessions", "revoke", "--user", "alice") == "1 session revoked of alice\n"
    assert cli.ok("sessions", "revoke", "--user", "alice") == "0 sessions revoked of alice\n"
    assert cli.refresh_error(a2) is SessionRevoked
    assert _sessions(cli, "alice") == {}
    assert _sessions(cli) == {s_b1: "bob live"}
    assert _sessions(cli, "--all") == {
        s_a1: "alice revoked: admin",
        s_a2: "alice revoked: admin",
        s_b1: "bob live",
    }
    assert cli.with_service(lambda services: services.tokens.refresh(b1.refresh_token)).access_token


def test_sessions_revoke_unknown_sid_and_bad_arguments(cli: AdminCli) -> None:
    """An unknown session id is one line, exit 2; so is giving neither or both of SID and
    --user. Revoking an already revoked session again is not an error."""
    cli.add_user("alice")
    sid = cli.sid(cli.login("alice"))
    assert cli.fails("sessions", "revoke", "0" * 32) == "latchkey: No such session.\n"
    assert "--user" in cli.fails("sessions", "revoke")
    assert "--user" in cli.fails("sessions", "revoke", sid, "--user", "alice")
    assert _sessions(cli, "alice") == {sid: "alice live"}
    assert cli.ok("sessions", "revoke", sid) == f"session {sid} revoked\n"
    assert cli.ok("sessions", "revoke", sid) == f"session {sid} was revoked already\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["user", "disable", "nobody"],
        ["user", "enable", "nobody"],
        ["user", "delete", "nobody", "--yes"],
        ["sessions", "list", "nobody"],
        ["sessions", "revoke", "--user", "nobody"],
        ["audit", "--user", "nobody"],
    ],
)
def test_unknown_username_is_one_clear_line(cli: AdminCli, argv: list[str]) -> None:
    """Every command given a user that does not exist says so, naming it, exit 2."""
    cli.add_user("alice")
    assert cli.fails(*argv) == "latchkey: No user named 'nobody'.\n"


def test_set_password_of_unknown_user(cli: AdminCli) -> None:
    """set-password for a user that does not exist: one line naming the user."""
    err = cli.fails("user", "set-password", "nobody", "--password-stdin", stdin=NEW_PASSWORD)
    assert err == "latchkey: No user named 'nobody'.\n"


# --- audit ---------------------------------------------------------------------------------


def _kinds(out: str) -> list[tuple[str, str]]:
    """(EVENT, USER) of each row of `audit`'s table."""
    return [(row[2], row[3]) for row in _rows(out)]  # TIME is two words


def test_audit_lists_events_oldest_first_and_filters(cli: AdminCli) -> None:
    """`audit` shows creations, logins (failed too), revocations, oldest first; --user keeps
    one user's events, --since a relative or absolute time, --limit the newest N."""
    cli.add_user("alice")
    cli.add_user("bob")
    assert cli.login_error("alice", "not her password") is InvalidCredentials
    sid = cli.sid(cli.login("alice"))
    cli.login("bob")
    cli.ok("sessions", "revoke", sid)

    out = cli.ok("audit")
    assert out.splitlines()[0].split() == ["TIME", "EVENT", "USER", "SESSION", "ADDRESS", "REASON"]
    assert _kinds(out)[:-1] == [
        ("user_created", "alice"),
        ("user_created", "bob"),
        ("login_failed", "alice"),
        ("login_ok", "alice"),
        ("login_ok", "bob"),
    ]
    assert _kinds(out)[-1][0] == "session_revoked"
    failed, revoked = _rows(out)[2], _rows(out)[-1]
    assert failed[-2:] == [ADDRESS, "wrong_password"]
    assert sid in revoked and revoked[-1] == "admin"

    alice = cli.ok("audit", "--user", "alice")
    assert [kind for kind, _ in _kinds(alice)] == [
        "user_created",
        "login_failed",
        "login_ok",
        "session_revoked",
    ]
    assert "bob" not in alice
    assert _kinds(cli.ok("audit", "--limit", "2"))[0] == ("login_ok", "bob")
    assert len(_rows(cli.ok("audit", "--limit", "2"))) == 2

    # An event two hours old: --since 1h leaves it out, --since 3h and a date keep it.
    old = AuditEvent(at=time.time() - 7200, kind=AuditKind.USER_ENABLED, username="alice")
    cli.with_service(lambda services: services.store.add_audit([old]))
    everything = len(_rows(out)) + 1
    assert len(_rows(cli.ok("audit"))) == everything
    assert _rows(cli.ok("audit"))[0][2] == "user_enabled"  # oldest first
    assert len(_rows(cli.ok("audit", "--since", "1h"))) == everything - 1
    assert len(_rows(cli.ok("audit", "--since", "3h"))) == everything
    assert len(_rows(cli.ok("audit", "--since", "2026-01-01"))) == everything
    assert len(_rows(cli.ok("audit", "--since", "30m"))) == everything - 1
    assert _rows(cli.ok("audit", "--since", "2999-01-01T00:00")) == []


@pytest.mark.parametrize("value", ["yesterday", "24", "1.5h", "7w", "2026-13-01"])
def test_audit_bad_since_is_a_usage_error(
    cli: AdminCli, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """A --since that is neither a duration nor an ISO date: argparse's error, exit 2."""
    with pytest.raises(SystemExit) as exited:
        main(["audit", "--since", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--since" in err and "expected e.g. 7d" in err and "Traceback" not in err


def test_audit_json_is_one_object_per_line(cli: AdminCli) -> None:
    """`audit --json`: every line is a JSON object with time and event fields, oldest first;
    no token, hash or password in any of them."""
    cli.add_user("alice")
    pair = cli.login("alice")
    cli.ok("sessions", "revoke", cli.sid(pair))
    lines = cli.ok("audit", "--json").splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(event, dict) for event in events)
    assert [event["audit"] for event in events] == ["user_created", "login_ok", "session_revoked"]
    assert events[1]["username"] == "alice" and events[1]["address"] == ADDRESS
    assert events[1]["sid"] == events[2]["sid"] == cli.sid(pair)
    assert events[2]["reason"] == "admin"
    assert all(event["time"].endswith("Z") for event in events)
    assert "argon2" not in "".join(lines)
    only_alice = cli.ok("audit", "--json", "--user", "alice", "--since", "1h", "--limit", "1")
    assert [json.loads(line)["audit"] for line in only_alice.splitlines()] == ["session_revoked"]


# --- every session of a user at once, faults ----------------------------------------------


def test_revoke_user_with_a_hundred_thousand_sessions(cli: AdminCli) -> None:
    """`sessions revoke --user` on a user with 100,000 sessions (seeded) ends them all with
    one row update and exits 0; the user's own session ends with them; others' stay."""
    cli.add_user("alice")
    cli.add_user("bob")
    mine, bobs = cli.login("alice"), cli.login("bob")

    async def seed(services: Container) -> None:
        user = await services.accounts.user_named("alice")
        async with services.store.engine.begin() as conn:
            await seed_sessions(conn, user.id, 100_000, now=time.time(), tag="c")

    cli.with_service(seed)
    assert cli.ok("sessions", "revoke", "--user", "alice") == "100001 sessions revoked of alice\n"
    assert cli.refresh_error(mine) is SessionRevoked
    assert cli.with_service(lambda s: s.tokens.refresh(bobs.refresh_token)).access_token
    assert cli.ok("sessions", "revoke", "--user", "alice") == "0 sessions revoked of alice\n"


def test_a_database_fault_is_one_line(
    cli: AdminCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A database that cannot be reached, or one that fails in a way nobody foresaw: one line
    on stderr, a non-zero exit, never a traceback."""
    monkeypatch.setenv("LATCHKEY_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    code, out, err = cli("sessions", "revoke", "--user", "alice")
    assert (code, out) == (2, "")
    assert err.startswith("latchkey: ") and err.count("\n") == 1, err
    monkeypatch.delenv("LATCHKEY_DATABASE_URL")

    async def broken(*args: object, **kwargs: object) -> None:
        raise AttributeError("'NoneType' object has no attribute 'bind_execute_many'")

    monkeypatch.setattr("latchkey.store.sql.SqlStore.revoke_user_sessions", broken)
    cli.add_user("alice")
    code, out, err = cli("sessions", "revoke", "--user", "alice")
    assert (code, out) == (1, "")
    assert (
        err == "latchkey: failed (AttributeError): 'NoneType' object has no attribute "
        "'bind_execute_many'\n"
    )
    assert "Traceback" not in err


# --- user update ---------------------------------------------------------------------------


def test_user_update_changes_what_the_next_login_grants(cli: AdminCli) -> None:
    """`user update amy --scope "read write"`: amy's next login grants that scope; a rename
    is the name to log in with; the audit trail has the change; --user takes the id."""
    cli.add_user("amy")
    old_pair = cli.login("amy")
    out = cli.ok("user", "update", "amy", "--scope", "read write")
    assert out.startswith("updated user amy (") and "scope 'read write'" in out
    assert _scope(cli, cli.login("amy")) == "read write"
    assert _scope(cli, old_pair) == ""  # the session logged in before keeps its own

    out = cli.ok("user", "update", "amy", "--username", "amelia", "--scope", "read")
    assert "renamed from amy" in out and "scope of 1 live session narrowed" in out
    assert cli.login_error("amy") is InvalidCredentials
    assert _scope(cli, cli.login("amelia")) == "read"
    user_id = _rows(cli.ok("user", "list"))[0][1]
    updates = [row for row in _rows(cli.ok("audit", "--user", user_id)) if "user_updated" in row]
    assert [row[3] for row in updates] == ["amy", "amelia"]
    assert updates[-1][-3:] == ["admin:", "scope", "username"]


def _scope(cli: AdminCli, pair: TokenPair) -> str:
    async def refreshed(services: Container) -> str:
        new = await services.tokens.refresh(pair.refresh_token)
        return str(services.tokens.verify_access_token(new.access_token).get("scope", ""))

    return cli.with_service(refreshed)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["user", "update", "amy"], "nothing to change: give --scope and/or --username"),
        (["user", "update", "nobody", "--scope", "x"], "No user named 'nobody'."),
        (["user", "update", "amy", "--username", "bob"], "A user with this name exists already."),
    ],
)
def test_user_update_refusals(cli: AdminCli, argv: list[str], message: str) -> None:
    cli.add_user("amy")
    cli.add_user("bob")
    assert cli.fails(*argv) == f"latchkey: {message}\n"
