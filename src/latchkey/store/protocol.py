"""The store protocols, one per table group: each service takes only the one it needs.

``tests/store/contract.py`` is their contract. Methods taking ``audit`` write those events in
the same transaction as the change, and only if the change happened; an event given as a
template gets the row's ``user_id`` and ``sid`` filled in. Ending every session of a user is
one :class:`~latchkey.core.epochs.EpochRevocation` (its audit event carries the count), in a
fixed number of statements whatever that count.
Adapters raise :class:`~latchkey.core.errors.ServiceUnavailable` when the database cannot be
reached, and :class:`~latchkey.core.errors.Conflict` for a duplicate username.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..core.audit import AuditEvent, AuditKind
from ..core.clients import Client
from ..core.epochs import EpochRevocation
from ..core.keyring import StoredKey
from ..core.sessions import Rotation, Session
from ..core.users import User


class UserStore(Protocol):
    """Accounts. The changes that end sessions revoke them in the same transaction."""

    async def add_user(self, user: User, *, audit: Sequence[AuditEvent] = ()) -> None: ...

    async def user_by_name(self, username_key: str) -> User | None: ...

    async def user_by_id(self, user_id: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def has_users(self) -> bool:
        """Whether there is at least one user (one row read, whatever their number)."""
        ...

    async def set_password_hash(self, user_id: str, password_hash: str) -> None: ...

    async def change_password(
        self,
        user_id: str,
        password_hash: str,
        now: float,
        *,
        keep_sid: str | None = None,
        audit: Sequence[AuditEvent] = (),
    ) -> EpochRevocation | None:
        """Set the hash and end every session of the user but ``keep_sid``, atomically;
        ``None`` for an unknown user."""
        ...

    async def set_user_disabled(
        self, user_id: str, now: float, *, disabled: bool, audit: Sequence[AuditEvent] = ()
    ) -> EpochRevocation | bool:
        """Disable (and end every session, atomically: the revocation) or enable (``True``);
        ``False`` if unknown."""
        ...

    async def delete_user(
        self, user_id: str, now: float, *, audit: Sequence[AuditEvent] = ()
    ) -> EpochRevocation | None:
        """End every session and delete the user, atomically; ``None`` if unknown."""
        ...

    async def update_user(
        self,
        user_id: str,
        *,
        username: str | None = None,
        scope: str | None = None,
        audit: Sequence[AuditEvent] = (),
    ) -> list[str] | None:
        """Rename the user and/or set its scope; with a scope, every session not revoked keeps
        only the scopes also in it, atomically. The ids of the sessions narrowed; ``None`` if
        the user is unknown; :class:`~latchkey.core.errors.Conflict` if the name is taken."""
        ...


class SessionStore(Protocol):
    """Sessions and their rotation; :meth:`purge` also deletes old audit events."""

    async def add_session(self, session: Session, *, audit: Sequence[AuditEvent] = ()) -> None: ...

    async def get_session(self, sid: str) -> Session | None: ...

    async def list_sessions(
        self, user_id: str | None = None, *, live_at: float | None = None
    ) -> list[Session]:
        """Most recently used first; with ``live_at``, only sessions live at that time."""
        ...

    async def rotate(
        self, rotation: Rotation, *, audit: AuditEvent | None = None
    ) -> Session | None:
        """Advance the session in ONE conditional write; the new row, or ``None`` if the
        session no longer holds ``rotation.expected_*`` or is revoked or expired."""
        ...

    async def reauthenticate(
        self, sid: str, user_id: str, now: float, *, audit: AuditEvent | None = None
    ) -> Session | None:
        """Record a new proof of the password at ``now`` in the live session ``sid`` of
        ``user_id``; the updated row, or ``None`` if it is unknown, someone else's, revoked
        or expired (nothing written then, not even ``audit``)."""
        ...

    async def revoke_session(
        self,
        sid: str,
        reason: str,
        now: float,
        *,
        user_id: str | None = None,
        audit: AuditEvent | None = None,
    ) -> bool:
        """Mark a live session revoked (with ``user_id``: only a session of that user);
        ``False`` if it was unknown, someone else's or already revoked."""
        ...

    async def revoke_user_sessions(
        self,
        user_id: str,
        reason: str,
        now: float,
        *,
        except_sid: str | None = None,
        audit: AuditEvent | None = None,
    ) -> EpochRevocation | None:
        """End every session of the user but ``except_sid`` (its epoch goes up by one);
        ``None`` for an unknown user."""
        ...

    async def user_revocations_since(
        self, since: float, *, limit: int = 10_000
    ) -> list[EpochRevocation]:
        """Mass revocations made at or after ``since``, oldest first."""
        ...

    async def end_oldest_sessions(
        self,
        user_id: str,
        epoch: int,
        *,
        keep: int,
        now: float,
        reason: str,
        batch: int,
        audit: AuditEvent | None = None,
    ) -> list[str]:
        """Revoke the user's live sessions of ``epoch`` past the ``keep`` most recently
        opened, at most ``batch`` of them (each audited from the template); the ids."""
        ...

    async def revoked_since(self, since: float, *, limit: int = 10_000) -> list[tuple[str, float]]:
        """``(sid, revoked_at)`` of sessions revoked at or after ``since``, oldest first."""
        ...

    async def purge(self, *, sessions_before: float, audit_before: float, batch: int) -> int:
        """Delete up to ``batch`` sessions revoked or expired before ``sessions_before``, up
        to ``batch`` ended by the oldest mass revocation made before then, and up to ``batch``
        audit events older than ``audit_before``; how many rows went."""
        ...


class AuditStore(Protocol):
    """The audit trail."""

    async def add_audit(self, events: Sequence[AuditEvent]) -> None: ...

    async def list_audit(
        self,
        *,
        user_id: str | None = None,
        since: float | None = None,
        kind: AuditKind | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        """Newest first."""
        ...


class KeyStore(Protocol):
    """Signing keys (private parts sealed, core/keyring.py)."""

    async def list_signing_keys(self) -> list[StoredKey]: ...

    async def add_signing_key(
        self, key: StoredKey, *, only_if_none: bool = False, only_if_none_after: float | None = None
    ) -> bool:
        """Store a key; with ``only_if_none``, only when no unretired key exists (atomic, so
        instances starting together create one first key, not several); with
        ``only_if_none_after``, only when no key was created after that time (atomic, so
        instances rotating on a schedule together add one key, not several)."""
        ...

    async def delete_signing_keys(self, kids: Sequence[str]) -> int:
        """Delete these keys, except the most recently created key of all (the table never
        empties this way); how many went."""
        ...

    async def withdraw_signing_keys(self, *, keep: str, at: float) -> list[str]:
        """Set ``retired_at`` to ``at`` on every key but ``keep`` not withdrawn by then; the
        kids withdrawn. Nothing happens unless ``keep`` exists."""
        ...


class ClientStore(Protocol):
    """Registered clients (resource servers that may introspect)."""

    async def add_client(self, client: Client, *, audit: Sequence[AuditEvent] = ()) -> None:
        """Store a registered client; :class:`Conflict` if its id exists already."""
        ...

    async def client_by_id(self, client_id: str) -> Client | None: ...

    async def list_clients(self) -> list[Client]:
        """Oldest first."""
        ...

    async def remove_client(self, client_id: str, *, audit: Sequence[AuditEvent] = ()) -> bool:
        """Delete a client (its audit events only if it existed); ``False`` if unknown."""
        ...


class Store(UserStore, SessionStore, AuditStore, KeyStore, ClientStore, Protocol):
    """Every table group, as the SQL store implements them."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
