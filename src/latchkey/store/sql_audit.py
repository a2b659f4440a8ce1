"""The audit trail table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from ..core.audit import AuditEvent, AuditKind
from .engine import SqlBase, write_audit
from .tables import audit_events


class SqlAudit(SqlBase):
    async def add_audit(self, events: Sequence[AuditEvent]) -> None:
        async with self._begin() as conn:
            await write_audit(conn, events)

    async def list_audit(
        self,
        *,
        user_id: str | None = None,
        since: float | None = None,
        kind: AuditKind | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """Newest first."""
        c = audit_events.c
        statement = select(audit_events).order_by(c.at.desc(), c.id.desc()).limit(limit)
        if kind is not None:
            statement = statement.where(c.kind == kind.value)
        if user_id is not None:
            statement = statement.where(c.user_id == user_id)
        if since is not None:
            statement = statement.where(c.at >= since)
        async with self._begin() as conn:
            rows = (await conn.execute(statement)).all()
        return [
            AuditEvent(
                id=row.id,
                at=row.at,
                kind=AuditKind(row.kind),
                user_id=row.user_id,
                username=row.username,
                sid=row.sid,
                address=row.address,
                user_agent=row.user_agent,
                reason=row.reason,
                count=row._mapping["count"],
            )
            for row in rows
        ]
