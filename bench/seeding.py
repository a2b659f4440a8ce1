"""Seeding sessions straight into the database, one bulk INSERT … SELECT per call: a user
with 100,000 sessions, or millions of rows for the capacity measurements (docs/capacity.md).

The rows are sessions no client holds a token for (their hashes are of nothing); they weigh
on the tables and indexes as real ones do. ``seed_sessions`` runs on an open connection of
either database: PostgreSQL numbers the rows with ``generate_series``, SQLite with a
recursive common table expression.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

DAY = 86_400.0

_COLUMNS = (
    "sid, user_id, generation, current_hash, created_at, last_used_at, idle_expires_at, "
    "absolute_expires_at, revoked_at, revoked_reason, scope, epoch"
)

# :start numbers the rows (so that several calls never clash); :tag sets a user's sids apart.
_POSTGRESQL = f"""
INSERT INTO sessions ({_COLUMNS})
SELECT md5(CAST(:tag AS text) || i::text), CAST(:user_id AS text), 0,
       decode(md5(i::text) || md5(CAST(:tag AS text) || i::text), 'hex'),
       CAST(:now AS float8) - i * 0.001, CAST(:now AS float8) - i * 0.001,
       CAST(:now AS float8) + CAST(:idle AS float8),
       CAST(:now AS float8) + CAST(:absolute AS float8),
       CASE WHEN i % CAST(:dead_every AS int) = 0
            THEN CAST(:now AS float8) - CAST(:dead_ago AS float8) END,
       CASE WHEN i % CAST(:dead_every AS int) = 0 THEN 'logout' END,
       '', CAST(:epoch AS int)
FROM generate_series(CAST(:start AS int), CAST(:start AS int) + CAST(:count AS int) - 1) AS i
"""

_SQLITE = f"""
WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :start + :count - 1)
INSERT INTO sessions ({_COLUMNS})
SELECT printf('%s%0*x', :tag, 32 - length(:tag), i), :user_id, 0, randomblob(32),
       :now - i * 0.001, :now - i * 0.001, :now + :idle, :now + :absolute,
       CASE WHEN i % :dead_every = 0 THEN :now - :dead_ago END,
       CASE WHEN i % :dead_every = 0 THEN 'logout' END,
       '', :epoch
FROM n
"""


async def seed_sessions(
    conn: AsyncConnection,
    user_id: str,
    count: int,
    *,
    now: float,
    tag: str = "s",
    start: int = 1,
    epoch: int = 0,
    dead_every: int = 0,
) -> None:
    """Insert ``count`` live sessions of ``user_id`` (used over the last ``count`` ms), in
    one statement; with ``dead_every`` = n, every n-th one revoked an hour ago instead (dead
    rows, as the purge leaves them). ``tag`` (hex digits, at most 8) sets these sids apart
    from other calls'."""
    if count <= 0:
        return
    statement = _POSTGRESQL if conn.dialect.name == "postgresql" else _SQLITE
    await conn.execute(
        text(statement),
        {
            "tag": tag,
            "user_id": user_id,
            "now": now,
            "idle": 7 * DAY,
            "absolute": 30 * DAY,
            "dead_every": dead_every or count + start + 1,
            "dead_ago": 3600.0,
            "epoch": epoch,
            "start": start,
            "count": count,
        },
    )
