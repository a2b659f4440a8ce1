"""Ending sessions: in the store first (the truth), then announced to every instance's guard,
which rejects the session's access tokens until the last of them has expired
(docs/design.md §3). One session is one ``sid`` entry; every session of a user is one
per-user cutoff (core/epochs.py), whatever their number."""

from __future__ import annotations

import dataclasses

from ..core.audit import AuditEvent, AuditKind
from ..core.epochs import EpochRevocation
from ..core.sessions import RevocationReason
from ..store.protocol import SessionStore
from .context import ClientInfo, Context


class Revoker:
    def __init__(self, sessions: SessionStore, context: Context, *, access_ttl: int) -> None:
        self._sessions = sessions
        self._context = context
        self._access_ttl = access_ttl

    async def revoke(
        self,
        sid: str,
        reason: RevocationReason,
        client: ClientInfo | None = None,
        *,
        user_id: str | None = None,
    ) -> bool:
        """Revoke one session (with ``user_id``: only a session of that user); ``False`` if
        there was none to revoke. Without ``user_id`` the sid is announced in any case."""
        context = self._context
        now = context.clock.now()
        client = client or ClientInfo()
        event = AuditEvent(
            at=now,
            kind=AuditKind.SESSION_REVOKED,
            address=client.address,
            user_agent=client.user_agent,
            reason=reason.value,
        )
        revoked = await self._sessions.revoke_session(
            sid, reason.value, now, user_id=user_id, audit=event
        )
        if revoked:
            context.events.revoked(reason)
            context.audit.log(dataclasses.replace(event, sid=sid, user_id=user_id))
        if revoked or user_id is None:
            await context.revocations.publish(sid, now + self._access_ttl)
        return revoked

    async def announce_sessions(
        self, sids: list[str], reason: RevocationReason, now: float, user_id: str
    ) -> None:
        """Publish sessions revoked in the store one by one (a few: the cap) and log each."""
        context = self._context
        for sid in sids:
            context.events.revoked(reason)
            context.audit.log(
                AuditEvent(
                    at=now,
                    kind=AuditKind.SESSION_REVOKED,
                    user_id=user_id,
                    sid=sid,
                    reason=reason.value,
                )
            )
            await context.revocations.publish(sid, now + self._access_ttl)

    async def announce(self, revocation: EpochRevocation) -> None:
        """Log a mass revocation made in the store and give every guard its one per-user
        cutoff (the user's access tokens issued before it are refused, the kept session's
        excepted), for as long as such a token may live."""
        context = self._context
        context.events.revoked(revocation.reason)
        context.audit.log(
            AuditEvent(
                at=revocation.revoked_at,
                kind=AuditKind.SESSIONS_REVOKED,
                user_id=revocation.user_id,
                sid=revocation.kept_sid,
                reason=revocation.reason,
                count=revocation.sessions,
            )
        )
        await context.revocations.publish_user(
            revocation.user_id,
            revocation.revoked_at,
            revocation.revoked_at + self._access_ttl,
            exempt_sid=revocation.kept_sid,
        )

    async def revoke_all_of(
        self,
        user_id: str,
        reason: RevocationReason,
        client: ClientInfo | None = None,
    ) -> int:
        """Every session of the user, as one row update (its epoch); how many were live."""
        now = self._context.clock.now()
        client = client or ClientInfo()
        template = AuditEvent(
            at=now,
            kind=AuditKind.SESSIONS_REVOKED,
            user_id=user_id,
            address=client.address,
            user_agent=client.user_agent,
        )
        revocation = await self._sessions.revoke_user_sessions(
            user_id, reason.value, now, audit=template
        )
        if revocation is None:
            return 0
        await self.announce(revocation)
        return revocation.sessions
