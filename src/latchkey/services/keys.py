"""Signing keys: loaded from the store by every instance, rotated by one (docs/keys.md).

The key ring (core/keyring.py) decides which key signs and which are published; this service
stores keys, reloads the ring, and deletes the rows of keys dropped long ago.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ..core.audit import AuditEvent, AuditKind
from ..core.errors import ConfigurationError
from ..core.keyring import KeyRing, StoredKey
from ..core.keys import Algorithm, SigningKey
from ..core.sealing import Sealer
from ..store.protocol import KeyStore
from .context import Context

log = logging.getLogger("latchkey.service")
KEY_ROW_RETENTION = 86400.0  # a dropped key's row is deleted this long after it was dropped


@dataclass(frozen=True, slots=True)
class KeyRotation:
    """When new signing keys sign (docs/keys.md)."""

    algorithm: Algorithm  # of every key generated here
    prepublish: int  # seconds a new key is in the JWKS before it signs (> JWKS max-age)
    interval: int  # rotate when the newest key is this many seconds old; 0: never


class KeyService:
    def __init__(
        self,
        *,
        store: KeyStore,
        ring: KeyRing,
        sealer: Sealer,
        context: Context,
        rotation: KeyRotation,
        imported_key: SigningKey | None = None,
    ) -> None:
        self._store = store
        self.ring = ring
        self._sealer = sealer
        self._context = context
        self.rotation = rotation
        self._imported_key = imported_key

    def jwks(self) -> dict[str, Any]:
        return self.ring.to_jwks()

    async def load(self, *, create: bool = False) -> None:
        """Reload the key ring from the store (every instance does this periodically, so a
        key added anywhere is used everywhere without a restart). With ``create``, make the
        first key — or import ``LATCHKEY_SIGNING_KEY_FILE`` — when needed."""
        now = self._context.clock.now()
        stored = await self._store.list_signing_keys()
        if create:
            imported = self._imported_key
            if imported is not None and imported.kid not in {key.kid for key in stored}:
                await self._store.add_signing_key(
                    StoredKey.seal(imported, self._sealer, now=now, activates_at=now)
                )
                stored = await self._store.list_signing_keys()
            elif not any(key.retired_at is None for key in stored):
                first = await self._context.hashing.run(
                    SigningKey.generate, self.rotation.algorithm
                )
                await self._store.add_signing_key(
                    StoredKey.seal(first, self._sealer, now=now, activates_at=now),
                    only_if_none=True,
                )
                stored = await self._store.list_signing_keys()
        # Unsealing and parsing new keys is CPU work: off the event loop (docs/design.md §3).
        opened = await self._context.hashing.run(self.ring.prepare, stored, now)
        self.ring.load(stored, now, opened)
        await self._delete_dropped(now)

    async def _delete_dropped(self, now: float) -> None:
        """Delete the rows (private keys) of keys dropped a day ago. The day covers clock skew
        between instances (none deletes a key another still accepts) and lets `keys list`
        show what was dropped. An imported key's row stays, so it is not imported again."""
        imported = self._imported_key.kid if self._imported_key else None
        gone = [
            status.key.kid
            for status in self.ring.status()
            if not status.published
            and status.dropped_after is not None
            and status.dropped_after + KEY_ROW_RETENTION <= now
            and status.key.kid != imported
        ]
        if gone and await self._store.delete_signing_keys(gone):
            log.info("deleted dropped signing keys %s", ", ".join(gone))

    async def rotate(self, *, immediately: bool = False, drop_previous: bool = False) -> str:
        """``latchkey keys rotate``: store a new key of LATCHKEY_SIGNING_ALG, published at
        once, signing from LATCHKEY_KEY_PREPUBLISH on (``immediately``: from now, for a
        compromise; caches that have not refetched the JWKS fail its tokens until they do).
        The key it replaces keeps verifying until its tokens have expired (core/keyring.py).
        ``drop_previous`` withdraws every other key at once (implies ``immediately``): the
        tokens they signed fail from now on. Returns the new kid."""
        immediately = immediately or drop_previous
        mode = "immediate" if immediately else "scheduled"
        kid = await self._add(None if immediately else self.rotation.prepublish, mode)
        if kid is None:  # never: the insert has no condition
            raise ConfigurationError("the new signing key was not stored")
        if drop_previous:
            at = self._context.clock.now()
            for old in await self._store.withdraw_signing_keys(keep=kid, at=at):
                await self._event(f"withdrawn: {old}")  # one row each: reason is short
        await self.load()
        return kid

    async def rotate_if_due(self) -> str | None:
        """Automatic rotation (LATCHKEY_KEY_ROTATION_INTERVAL): a new key when the newest one
        is that old. Any number of instances may run this at once: one conditional insert in
        the store decides, so one key is added. The new kid, or ``None``."""
        interval = self.rotation.interval
        newest = max((status.key.created_at for status in self.ring.status()), default=None)
        if not interval or newest is None or self._context.clock.now() - newest < interval:
            return None
        kid = await self._add(self.rotation.prepublish, "automatic", interval=interval)
        if kid is not None:
            await self.load()
        return kid

    async def _add(
        self, prepublish: int | None, mode: str, *, interval: int | None = None
    ) -> str | None:
        # RFC 8725 §3.5: keys from the OS CSPRNG (cryptography); RSA generation is slow.
        # Off the event loop, but not in the hashing pool: a login storm must not delay it.
        key = await asyncio.to_thread(SigningKey.generate, self.rotation.algorithm)
        now = self._context.clock.now()
        activates_at = now if prepublish is None else now + prepublish
        stored = StoredKey.seal(key, self._sealer, now=now, activates_at=activates_at)
        since = None if interval is None else now - interval
        if not await self._store.add_signing_key(stored, only_if_none_after=since):
            return None  # another instance rotated first
        await self._event(f"{mode}: {key.kid}")
        return key.kid

    async def _event(self, reason: str) -> None:
        event = AuditEvent(at=self._context.clock.now(), kind=AuditKind.KEY_ROTATED, reason=reason)
        await self._context.audit.record(event)
