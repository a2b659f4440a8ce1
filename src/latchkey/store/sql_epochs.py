"""Ending every session of a user at once (core/epochs.py): a fixed number of statements in
one transaction, whatever the user's session count — the user's epoch goes up by one, the
live sessions of the old one are counted (for the audit event), the session a password change
keeps moves to the new epoch, and one row records the revocation for every instance's
deny-list and for the purge."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..core.audit import AuditEvent, AuditKind
from ..core.epochs import EpochRevocation
from .engine import write_audit
from .tables import sessions, user_revocations, users


async def end_epoch(
    conn: AsyncConnection,
    user_id: str,
    reason: str,
    now: float,
    *,
    keep_sid: str | None = None,
    audit: AuditEvent | None = None,
) -> EpochRevocation | None:
    """End every session of the user but ``keep_sid`` (in the caller's transaction);
    ``None`` for an unknown user. With ``audit``, one event (its kind
    ``sessions_revoked``) carrying the number of live sessions ended."""
    epoch = (
        await conn.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(epoch=users.c.epoch + 1, not_before=now, not_before_reason=reason)
            .returning(users.c.epoch)
        )
    ).scalar_one_or_none()
    if epoch is None:
        return None
    c = sessions.c
    of_old_epoch = and_(
        c.user_id == user_id,
        c.epoch == epoch - 1,
        c.revoked_at.is_(None),
        c.idle_expires_at > now,
        c.absolute_expires_at > now,
    )
    count = (
        await conn.execute(select(func.count()).select_from(sessions).where(of_old_epoch))
    ).scalar_one()
    kept = None
    if keep_sid is not None:
        moved = await conn.execute(
            update(sessions).where(c.sid == keep_sid, of_old_epoch).values(epoch=epoch)
        )
        if moved.rowcount:
            kept, count = keep_sid, count - 1
    revocation = EpochRevocation(user_id, epoch, now, reason, kept_sid=kept, sessions=count)
    await conn.execute(
        user_revocations.insert().values(
            user_id=user_id,
            epoch=epoch,
            revoked_at=now,
            reason=reason,
            kept_sid=kept,
            sessions=count,
        )
    )
    if audit is not None:
        event = dataclasses.replace(
            audit,
            kind=AuditKind.SESSIONS_REVOKED,
            user_id=user_id,
            sid=kept,
            reason=reason,
            count=count,
        )
        await write_audit(conn, [event])
    return revocation


def revocation_from(row: Row[Any]) -> EpochRevocation:
    return EpochRevocation(
        user_id=row.user_id,
        epoch=row.epoch,
        revoked_at=row.revoked_at,
        reason=row.reason,
        kept_sid=row.kept_sid,
        sessions=row.sessions,
    )
