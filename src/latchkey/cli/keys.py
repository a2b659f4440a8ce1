"""``latchkey keys …`` (signing keys, the deployment secret) and ``latchkey clients …``."""

from __future__ import annotations

import argparse
import sys

from ..adapters.keyfiles import new_secret
from ..bootstrap import Container
from ..core.keyring import KeyState, KeyStatus
from .common import CommandError, maybe_when, printable, run, when


def cmd_keys_list(_args: argparse.Namespace) -> None:
    async def work(container: Container) -> list[KeyStatus]:
        await container.keys.load()
        return container.keys.ring.status()

    statuses = run(work)
    print(
        f"{'KID':<44} {'ALG':<6} {'STATE':<10} {'CREATED':<20}  {'ACTIVATES':<20}  "
        f"{'RETIRES':<20}  DROPPED AFTER"
    )
    for status in statuses:
        key = status.key
        print(
            f"{key.kid:<44} {key.alg:<6} {status.state.value:<10} {when(key.created_at):<20}  "
            f"{when(key.activates_at):<20}  {maybe_when(status.retires_at):<20}  "
            f"{maybe_when(status.dropped_after)}"
        )


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    if args.drop_previous and not args.immediately:
        raise CommandError("--drop-previous needs --immediately (the new key must sign now)")

    async def work(container: Container) -> tuple[str, list[KeyStatus], float]:
        await container.keys.load()
        # The instant the rotation starts from: the wait printed is the configured delay, not
        # that less however long the rotation's own database work took.
        now = container.clock.now()
        kid = await container.keys.rotate(
            immediately=args.immediately, drop_previous=args.drop_previous
        )
        return kid, container.keys.ring.status(), now

    kid, statuses, now = run(work, changes=True)
    new = next(status for status in statuses if status.key.kid == kid)
    wait = int(new.key.activates_at - now)  # whole seconds: an immediate rotation is "now"
    signs = f"from {when(new.key.activates_at)} (in {wait} s)" if wait > 0 else "now"
    print(f"new key {kid} ({new.key.alg}): published now, signs {signs}")
    for status in statuses:
        key = status.key
        if key.kid == kid:
            continue
        if status.published and status.retires_at is not None:
            print(
                f"key {key.kid}: signs until {when(status.retires_at)}, "
                f"published until {maybe_when(status.dropped_after)}"
            )
        elif status.state is KeyState.WITHDRAWN and (key.retired_at or 0) >= new.key.created_at:
            print(f"key {key.kid}: withdrawn now, the tokens it signed are refused")


def cmd_keys_secret(_args: argparse.Namespace) -> None:
    print(new_secret())


def cmd_clients_add(args: argparse.Namespace) -> None:
    client, secret = run(lambda c: c.oauth.add_client(args.name), changes=True)
    print(f"client_id: {client.id}\nclient_secret: {secret}")
    print(f"latchkey: registered {client.name}; the secret is not shown again", file=sys.stderr)


def cmd_clients_list(_args: argparse.Namespace) -> None:
    clients = run(lambda c: c.oauth.list_clients())
    print(f"{'CLIENT ID':<32}  {'CREATED':<20}  NAME")
    for client in clients:
        print(f"{client.id:<32}  {when(client.created_at):<20}  {printable(client.name)}")


def cmd_clients_remove(args: argparse.Namespace) -> None:
    run(lambda c: c.oauth.remove_client(args.client_id), changes=True)
    print(f"removed client {args.client_id}")
