"""The SQL store (SQLAlchemy 2 Core, async; SQLite by default): every table group's
protocol of store/protocol.py in one object, one per process."""

from __future__ import annotations

from .sql_audit import SqlAudit
from .sql_keys import SqlClients, SqlKeys
from .sql_sessions import SqlSessions
from .sql_users import SqlUsers


class SqlStore(SqlUsers, SqlSessions, SqlAudit, SqlKeys, SqlClients):
    """:class:`~latchkey.store.protocol.Store` over SQLAlchemy."""
