"""The audit trail: every security event as a log line, and as a row."""

from __future__ import annotations

import logging

from ..core.audit import AuditEvent, AuditKind
from ..core.errors import NotFound
from ..core.users import username_key
from ..store.protocol import AuditStore, UserStore
from .lookup import user_named

audit_log = logging.getLogger("latchkey.audit")


class AuditRecorder:
    """Writes audit events: always the log line; the row too for an event that changes nothing
    else (events that go with a change are written by the store in the change's transaction)."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    def log(self, event: AuditEvent, level: int = logging.INFO) -> None:
        audit_log.log(level, event.kind.value, extra=event.log_fields())

    async def record(self, event: AuditEvent, level: int = logging.INFO) -> None:
        """An event that changes nothing else: its own row, and its log line."""
        self.log(event, level)
        await self._store.add_audit([event])


class AuditService:
    """``latchkey audit``: the trail, of everyone or of one user."""

    def __init__(self, audit: AuditStore, users: UserStore) -> None:
        self._audit = audit
        self._users = users

    async def trail(
        self, *, username: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditEvent]:
        user_id = await self._user_id(username) if username else None
        return await self._audit.list_audit(user_id=user_id, since=since, limit=limit)

    async def _user_id(self, username: str) -> str:
        """The id of the user named ``username``; else ``username`` itself if it is a user's
        id or one the trail holds events of (a deleted or renamed user); else the id of a
        deleted user by the name recorded when it was deleted (the latest such)."""
        try:
            return (await user_named(self._users, username)).id
        except NotFound:
            if await self._users.user_by_id(username) is not None or await self._audit.list_audit(
                user_id=username, limit=1
            ):
                return username
            key = username_key(username)
            for event in await self._audit.list_audit(kind=AuditKind.USER_DELETED, limit=10_000):
                if event.user_id and event.username and username_key(event.username) == key:
                    return event.user_id
            raise
