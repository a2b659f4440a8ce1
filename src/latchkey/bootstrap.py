"""The one wiring place: settings in, every adapter, service, metric, event sink and
background task out, each built once (:func:`build`).

``web.create_app`` and the ``latchkey`` command only assemble what :class:`Container` holds.
Defaults live in :class:`~latchkey.settings.Settings` alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .adapters.keyfiles import load_or_create_secret, load_signing_key, parse_secret
from .adapters.revocations import LocalRevocations, Revocations
from .adapters.throttle import LocalThrottle, Throttle
from .core.access import AccessTokenIssuer
from .core.clock import Clock, SystemClock
from .core.errors import ConfigurationError, LatchkeyError, SchemaBehind
from .core.keyring import KeyRing, KeyTimes
from .core.passwords import Argon2Parameters, PasswordHasher
from .core.policy import PasswordPolicy
from .core.refresh import RefreshTokenCodec
from .core.sealing import Sealer, derive
from .core.sessions import SessionPolicy
from .core.verifier import Verifier
from .ops.events import Events
from .ops.metrics import Metrics, PrometheusEvents
from .services import (
    AccessTokens,
    AccountService,
    AuditRecorder,
    AuditService,
    Context,
    HashingPool,
    Housekeeping,
    KeyRotation,
    KeyService,
    OAuthService,
    SessionService,
    ThrottleLimits,
    TokenService,
)
from .services.lookup import Liveness
from .services.revoker import Revoker
from .settings import Settings
from .store import backup, migrate
from .store.backup import BackupKeys, Contents
from .store.sql import SqlStore

log = logging.getLogger("latchkey.web")


@dataclass(slots=True)
class Container:
    """Everything one process runs, built once from the settings."""

    settings: Settings
    clock: Clock
    store: SqlStore
    metrics: Metrics
    revocations: Revocations
    throttle: Throttle
    hashing: HashingPool
    verifier: Verifier
    tokens: TokenService
    sessions: SessionService
    accounts: AccountService
    keys: KeyService
    audit: AuditService
    oauth: OAuthService
    backup_keys: BackupKeys  # what a backup is bound to: the secret key, the refresh MAC key

    async def migrate(self) -> None:
        """Apply pending schema migrations (idempotent), then load or create the signing
        keys: what ``latchkey migrate`` and the server's start do."""
        await migrate.upgrade(self.store.engine)
        await self.keys.load(create=True)

    async def require_schema(self) -> None:
        """For every other command: :class:`SchemaBehind` unless the schema is current."""
        current = await migrate.current_revision(self.store.engine)
        needed = migrate.head_revision()
        if current != needed:
            raise SchemaBehind(current, needed)

    async def backup(self, path: Path) -> Contents:
        """``latchkey backup``: every row, read in one transaction, to ``path`` (0600)."""
        return await backup.backup(self.store.engine, path, self.backup_keys, now=self.clock.now())

    async def restore(self, path: Path) -> Contents:
        """``latchkey restore``: the backup at ``path`` into this empty database, in one
        transaction, then migrated to the newest schema."""
        return await backup.restore(self.store.engine, path, self.backup_keys)

    async def start(self) -> None:
        """The server's start: schema, keys, then the deny-list fan-out and its first feed."""
        await self.migrate()
        # The source: what Redis must hold again if it lost its data (docs/deployment.md).
        await self.revocations.start(self.sessions.live_revocations)
        await self.sessions.sync_revocations()

    def background(self) -> list[Coroutine[Any, Any, None]]:
        """The loops a server runs for its whole life."""
        settings = self.settings
        loops = [
            # Keys added by other instances or by `latchkey keys …`, without a restart.
            every(settings.key_refresh_interval, "reloading signing keys", self.keys.load),
            # Revocations made by other instances or the CLI, into this guard's deny-list.
            every(
                settings.revocation_poll_interval, "revocation feed", self.sessions.sync_revocations
            ),
            every(settings.purge_interval, "purge", self._purge),
        ]
        if settings.key_rotation_interval:
            # A new key when the newest is LATCHKEY_KEY_ROTATION_INTERVAL old (one instance
            # adds it: a conditional insert decides); the others load it at their next reload.
            loops.append(
                every(settings.key_refresh_interval, "key rotation", self.keys.rotate_if_due)
            )
        return loops

    async def _purge(self) -> None:
        """Delete dead sessions and old audit events in small batches until none are left."""
        while await self.sessions.purge() >= self.sessions.housekeeping.purge_batch:
            await asyncio.sleep(0)  # let requests in between batches

    async def close(self) -> None:
        self.hashing.close()
        await self.revocations.close()
        await self.throttle.close()
        await self.store.close()


async def every(interval: float, what: str, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` every ``interval`` seconds for the life of the app; a failure (database
    down: 503) is logged and tried again next time, never fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except LatchkeyError as exc:
            log.warning("%s failed: %s", what, exc.description)
        except Exception:
            # Not expected; the task must outlive it all the same, or keys, revocations and
            # purges would silently stop for the rest of the process's life.
            log.exception("%s failed", what)


def build(
    settings: Settings,
    clock: Clock | None = None,
    *,
    metrics: Metrics | None = None,
    events: Events | None = None,
    create: bool = True,
) -> Container:
    """Everything but the schema and the keys (:meth:`Container.migrate` does those).

    ``create``: with SQLite, make the data directory, the database file and the secret when
    missing (what ``serve`` and ``migrate`` do); without, a missing secret is an error."""
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    secret, refresh_secret = _secrets(settings, create=create)
    store = SqlStore.from_url(
        settings.database_url, pool_size=settings.db_pool_size, timeout=settings.db_timeout
    )
    revocations, throttle = _fan_out(settings, clock)
    sealer = Sealer(secret)
    codec = RefreshTokenCodec(refresh_secret)
    ring = KeyRing(
        sealer,
        clock=clock,
        times=KeyTimes(
            token_lifetime=settings.access_ttl,
            leeway=settings.leeway,
            # An instance learns of a new key at its next reload; allow one late reload.
            propagation=2 * settings.key_refresh_interval,
        ),
    )
    issuer = AccessTokenIssuer(
        ring,
        issuer=settings.issuer,
        audience=settings.audience,
        ttl=settings.access_ttl,
        clock=clock,
    )
    # The service's own guard: keys from the ring, revoked sessions from the deny-list.
    verifier = Verifier(
        ring,
        issuer=settings.issuer,
        audience=settings.audience,
        leeway=settings.leeway,
        max_lifetime=settings.access_ttl,
        clock=clock,
        revoked_sessions=revocations.local,
    )
    hashing = HashingPool(queue=settings.hash_queue)
    context = Context(
        clock=clock,
        events=events or PrometheusEvents(metrics),
        audit=AuditRecorder(store),
        hashing=hashing,
        revocations=revocations,
    )
    hasher = PasswordHasher(
        Argon2Parameters(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
    )
    limits = ThrottleLimits(
        account=settings.throttle_account_failures,
        address=settings.throttle_address_failures,
        registrations=settings.throttle_registrations,
    )
    liveness = Liveness(store, store, clock, fresh_auth_max_age=settings.fresh_auth_max_age)
    revoker = Revoker(store, context, access_ttl=settings.access_ttl)
    tokens = TokenService(
        users=store,
        sessions=store,
        context=context,
        access=AccessTokens(issuer, verifier, codec),
        codec=codec,
        hasher=hasher,
        policy=SessionPolicy(
            refresh_ttl=settings.refresh_ttl,
            session_ttl=settings.session_ttl,
            grace=settings.refresh_grace,
        ),
        throttle=throttle,
        limits=limits,
        revoker=revoker,
        audit_refreshes=settings.audit_refreshes,
        max_sessions=settings.max_sessions_per_user,
    )
    return Container(
        settings=settings,
        clock=clock,
        store=store,
        metrics=metrics,
        revocations=revocations,
        throttle=throttle,
        hashing=hashing,
        verifier=verifier,
        tokens=tokens,
        sessions=SessionService(
            sessions=store,
            users=store,
            clock=clock,
            revocations=revocations,
            liveness=liveness,
            revoker=revoker,
            access_ttl=settings.access_ttl,
            housekeeping=Housekeeping(audit_retention=settings.audit_retention),
        ),
        accounts=AccountService(
            users=store,
            context=context,
            hasher=hasher,
            password_policy=PasswordPolicy(),
            throttle=throttle,
            limits=limits,
            liveness=liveness,
            revoker=revoker,
            allow_registration=settings.allow_registration,
        ),
        keys=KeyService(
            store=store,
            ring=ring,
            sealer=sealer,
            context=context,
            rotation=KeyRotation(
                algorithm=settings.signing_alg,
                prepublish=settings.key_prepublish,
                interval=settings.key_rotation_interval,
            ),
            imported_key=(
                load_signing_key(settings.signing_key_file) if settings.signing_key_file else None
            ),
        ),
        audit=AuditService(store, store),
        oauth=OAuthService(
            tokens=tokens,
            sessions=store,
            clients=store,
            context=context,
            liveness=liveness,
            issuer=settings.issuer,
        ),
        backup_keys=BackupKeys(secret, refresh_secret),
    )


def _fan_out(settings: Settings, clock: Clock) -> tuple[Revocations, Throttle]:
    """Revocations and login throttling: through Redis when configured, else in process."""
    if settings.redis_url is None:
        return LocalRevocations(clock), LocalThrottle(clock, settings.throttle_window)
    from .adapters.redis_circuit import circuit_for
    from .adapters.redis_revocations import RedisRevocations
    from .adapters.redis_throttle import RedisThrottle

    url, timeout, window = settings.redis_url, settings.redis_timeout, settings.throttle_window
    # One circuit for both: the first call that meets a hung Redis spares every other one.
    circuit = circuit_for(url, timeout=timeout, wait=settings.redis_wait)
    return (
        RedisRevocations(url, clock, socket_timeout=timeout, circuit=circuit),
        RedisThrottle(url, clock, window, socket_timeout=timeout, circuit=circuit),
    )


def _secrets(settings: Settings, *, create: bool) -> tuple[bytes, bytes]:
    """The deployment secret (created in the data directory with SQLite if not configured)
    and the refresh-token MAC key."""
    if settings.is_sqlite and create:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private_file(settings.sqlite_path)
    elif settings.sqlite_path is not None and not settings.sqlite_path.exists():
        # SQLite would make a new, empty database here: not the one the service uses.
        raise ConfigurationError(
            f"no database at {settings.sqlite_path.resolve()}: run this where the service "
            "runs, or set LATCHKEY_DATA_DIR (or LATCHKEY_DATABASE_URL) to the service's; "
            "to start a new one there, run `latchkey migrate`"
        )
    configured = settings.secret_key.get_secret_value() if settings.secret_key else None
    secret = load_or_create_secret(settings.data_dir, configured, create=create)
    refresh_secret = (
        parse_secret(settings.refresh_secret.get_secret_value(), "LATCHKEY_REFRESH_SECRET")
        if settings.refresh_secret
        else derive(secret, b"refresh-token")
    )
    return secret, refresh_secret


def _private_file(path: Path | None) -> None:
    """Create the SQLite file owner-only before SQLite does (it would honour the umask)."""
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
