"""The store protocol every adapter implements; ``tests/store_contract.py`` is its contract.

Adapters raise :class:`~latchkey.core.errors.ServiceUnavailable` when the database cannot be
reached, and :class:`~latchkey.core.errors.Conflict` for a duplicate username.
"""

from __future__ import annotations

from typing import Protocol

from ..core.keyring import StoredKey
from ..core.sessions import Rotation, Session
from ..core.users import User


class Store(Protocol):
    async def add_user(self, user: User) -> None: ...

    async def user_by_name(self, username_key: str) -> User | None: ...

    async def user_by_id(self, user_id: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def add_session(self, session: Session) -> None: ...

    async def get_session(self, sid: str) -> Session | None: ...

    async def rotate(self, rotation: Rotation) -> Session | None:
        """Advance the session in ONE conditional write; the new row, or ``None`` if the
        session no longer holds ``rotation.expected_*`` or is revoked or expired."""
        ...

    async def revoke_session(self, sid: str, reason: str, now: float) -> bool:
        """Mark a live session revoked; ``False`` if it was unknown or already revoked."""
        ...

    async def list_signing_keys(self) -> list[StoredKey]: ...

    async def add_signing_key(self, key: StoredKey, *, only_if_none: bool = False) -> bool:
        """Store a key; with ``only_if_none``, only when no unretired key exists (atomic, so
        instances starting together create one first key, not several)."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
