"""``latchkey user …``: accounts."""

from __future__ import annotations

import argparse
import sys

from .common import CommandError, ended, read_password, run, when


def cmd_user_add(args: argparse.Namespace) -> None:
    password = read_password(args)
    user = run(lambda c: c.accounts.add_user(args.username, password, args.scope), changes=True)
    print(f"created user {user.username} ({user.id})")


def cmd_user_list(_args: argparse.Namespace) -> None:
    users = run(lambda c: c.accounts.list_users())
    print(f"{'USERNAME':<24} {'ID':<32}  {'CREATED':<20}  {'STATE':<8}  SCOPE")
    for user in users:
        state = "active" if user.disabled_at is None else "disabled"
        print(
            f"{user.username:<24} {user.id:<32}  {when(user.created_at):<20}  {state:<8}  "
            f"{user.scope}"
        )


def cmd_user_disable(args: argparse.Namespace) -> None:
    revoked = run(lambda c: c.accounts.set_disabled(args.username, disabled=True), changes=True)
    print(f"disabled user {args.username}; {ended(revoked)}")


def cmd_user_enable(args: argparse.Namespace) -> None:
    run(lambda c: c.accounts.set_disabled(args.username, disabled=False), changes=True)
    print(f"enabled user {args.username}")


def cmd_user_delete(args: argparse.Namespace) -> None:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CommandError("deleting a user cannot be undone: confirm with --yes")
        if input(f"Type {args.username!r} to delete this user for good: ") != args.username:
            raise CommandError("not deleted")
    revoked = run(lambda c: c.accounts.delete_user(args.username), changes=True)
    print(f"deleted user {args.username}; {ended(revoked)}")


def cmd_user_set_password(args: argparse.Namespace) -> None:
    password = read_password(args)
    revoked = run(lambda c: c.accounts.set_password(args.username, password), changes=True)
    print(f"password of {args.username} changed; {ended(revoked)}")


def cmd_user_update(args: argparse.Namespace) -> None:
    if args.scope is None and args.new_username is None:
        raise CommandError("nothing to change: give --scope and/or --username")
    update = run(
        lambda c: c.accounts.update_user(
            args.username, scope=args.scope, new_username=args.new_username
        ),
        changes=True,
    )
    user = update.user
    changed = []
    if update.renamed_from is not None:
        changed.append(f"renamed from {update.renamed_from}")
    if args.scope is not None:
        changed.append(f"scope {user.scope!r}")
        if update.narrowed:
            count = len(update.narrowed)
            changed.append(
                f"scope of {count} live session{'' if count == 1 else 's'} narrowed "
                "(from the next refresh)"
            )
    print(f"updated user {user.username} ({user.id}): {'; '.join(changed)}")
