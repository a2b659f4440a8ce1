"""``latchkey sessions …`` and ``latchkey audit``."""

from __future__ import annotations

import argparse
import json
import time

from ..bootstrap import Container
from ..core.sessions import Session
from .common import CommandError, ended, printable, run, when


def cmd_sessions_list(args: argparse.Namespace) -> None:
    async def work(container: Container) -> list[tuple[Session, str]]:
        sessions = await container.sessions.list_sessions(args.username, include_ended=args.all)
        names = {user.id: user.username for user in await container.accounts.list_users()}
        return [(session, names.get(session.user_id, "?")) for session in sessions]

    rows = run(work)
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
            f"{session.sid:<32}  {username:<20} {when(session.created_at):<20}  "
            f"{when(session.last_used_at):<20}  {state:<27} {session.address or '-':<16} "
            f"{printable(session.user_agent or '-')}"
        )


def cmd_sessions_revoke(args: argparse.Namespace) -> None:
    if (args.sid is None) == (args.user is None):
        raise CommandError("give either a session id or --user USERNAME")
    if args.user is not None:
        revoked = run(lambda c: c.sessions.revoke_sessions_of(args.user), changes=True)
        print(f"{ended(revoked)} of {args.user}")
    else:
        if run(lambda c: c.sessions.revoke_session(args.sid), changes=True):
            print(f"session {args.sid} revoked")
        else:
            print(f"session {args.sid} was revoked already")


def cmd_audit(args: argparse.Namespace) -> None:
    events = run(lambda c: c.audit.trail(username=args.user, since=args.since, limit=args.limit))
    if args.json:
        for event in reversed(events):
            print(json.dumps({"time": when(event.at), **event.log_fields()}))
        return
    print(f"{'TIME':<20}  {'EVENT':<16} {'USER':<20} {'SESSION':<32}  {'ADDRESS':<16} REASON")
    for event in reversed(events):  # oldest first, as a log reads
        who = event.username or event.user_id or "-"
        print(
            f"{when(event.at):<20}  {event.kind.value:<16} {who:<20} {event.sid or '-':<32}  "
            f"{event.address or '-':<16} {event.reason or ''}"
        )
