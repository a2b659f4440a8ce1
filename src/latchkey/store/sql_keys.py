"""The signing keys table (private parts sealed) and the clients table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, literal, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..core.audit import AuditEvent
from ..core.clients import Client
from ..core.errors import Conflict
from ..core.keyring import StoredKey
from .engine import SqlBase, write_audit
from .tables import clients, signing_keys

_KEYS_LOCK = 0x6C6B_6B65  # advisory-lock id for first-key creation ("lkke")


class SqlKeys(SqlBase):
    async def list_signing_keys(self) -> list[StoredKey]:
        async with self._begin() as conn:
            rows = (await conn.execute(select(signing_keys))).all()
        return [
            StoredKey(
                kid=row.kid,
                alg=row.alg,
                sealed_private_key=bytes(row.sealed_private_key),
                created_at=row.created_at,
                activates_at=row.activates_at,
                retired_at=row.retired_at,
            )
            for row in rows
        ]

    async def add_signing_key(
        self, key: StoredKey, *, only_if_none: bool = False, only_if_none_after: float | None = None
    ) -> bool:
        c = signing_keys.c
        values = {
            "kid": key.kid,
            "alg": key.alg,
            "sealed_private_key": key.sealed_private_key,
            "created_at": key.created_at,
            "activates_at": key.activates_at,
            "retired_at": key.retired_at,
        }
        unless = []  # one INSERT … SELECT … WHERE NOT EXISTS: the check and the write are one
        if only_if_none:
            unless.append(select(c.kid).where(c.retired_at.is_(None)).exists())
        if only_if_none_after is not None:
            unless.append(select(c.kid).where(c.created_at > only_if_none_after).exists())
        async with self._begin() as conn:
            if not unless:
                await conn.execute(signing_keys.insert().values(**values))
                return True
            if self.is_postgresql:
                # Serialise conditional key creation across instances for this transaction
                # (READ COMMITTED would let two such INSERTs both see no row).
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _KEYS_LOCK})
            source = select(
                *[literal(v, type_=c[k].type).label(k) for k, v in values.items()]
            ).where(*[~exists for exists in unless])
            result = await conn.execute(signing_keys.insert().from_select(list(values), source))
            return bool(result.rowcount)

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        if not kids:
            return 0
        c = signing_keys.c
        newest = select(c.kid).order_by(c.created_at.desc(), c.kid.desc()).limit(1)
        async with self._begin() as conn:
            result = await conn.execute(
                delete(signing_keys).where(c.kid.in_(list(kids)), c.kid != newest.scalar_subquery())
            )
        return int(result.rowcount)

    async def withdraw_signing_keys(self, *, keep: str, at: float) -> list[str]:
        c = signing_keys.c
        async with self._begin() as conn:
            if (await conn.execute(select(c.kid).where(c.kid == keep))).first() is None:
                return []
            result = await conn.execute(
                update(signing_keys)
                .where(c.kid != keep, (c.retired_at.is_(None)) | (c.retired_at > at))
                .values(retired_at=at)
                .returning(c.kid)
            )
            return sorted(row.kid for row in result)


def _client(row: Row[Any]) -> Client:
    return Client(
        id=row.client_id,
        name=row.name,
        secret_hash=bytes(row.secret_hash),
        created_at=row.created_at,
    )


class SqlClients(SqlBase):
    async def add_client(self, client: Client, *, audit: Sequence[AuditEvent] = ()) -> None:
        values = {
            "client_id": client.id,
            "name": client.name,
            "secret_hash": client.secret_hash,
            "created_at": client.created_at,
        }
        try:
            async with self._begin() as conn:
                await conn.execute(clients.insert().values(**values))
                await write_audit(conn, audit)
        except IntegrityError as exc:
            raise Conflict("A client with this id exists already.") from exc

    async def client_by_id(self, client_id: str) -> Client | None:
        async with self._begin() as conn:
            row = (
                await conn.execute(select(clients).where(clients.c.client_id == client_id))
            ).first()
        return None if row is None else _client(row)

    async def list_clients(self) -> list[Client]:
        c = clients.c
        async with self._begin() as conn:
            rows = (await conn.execute(select(clients).order_by(c.created_at, c.client_id))).all()
        return [_client(row) for row in rows]

    async def remove_client(self, client_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        async with self._begin() as conn:
            result = await conn.execute(delete(clients).where(clients.c.client_id == client_id))
            if not result.rowcount:
                return False
            await write_audit(conn, audit)
        return True
