"""The one place that wires settings → store → service."""

from __future__ import annotations

import os
from pathlib import Path

from .core.clock import Clock, SystemClock
from .core.keyring import KeyRing, KeyTimes
from .core.passwords import Argon2Parameters, PasswordHasher
from .core.refresh import RefreshTokenCodec
from .core.sealing import Sealer, derive
from .core.sessions import SessionPolicy
from .events import Events, NullEvents
from .keystore import load_or_create_secret, load_signing_key, parse_secret
from .revocation import LocalRevocations, Revocations
from .service import AuthService, Housekeeping, KeyRotation, ThrottleLimits
from .settings import Settings
from .store import migrate
from .store.sql import SqlStore
from .throttle import LocalThrottle, Throttle


def build_service(
    settings: Settings,
    clock: Clock | None = None,
    *,
    events: Events | None = None,
    revocations: Revocations | None = None,
    throttle: Throttle | None = None,
) -> AuthService:
    """Everything but the schema and the keys: :func:`prepare` loads those."""
    clock = clock or SystemClock()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private_file(settings.sqlite_path)
    configured = settings.secret_key.get_secret_value() if settings.secret_key else None
    secret = load_or_create_secret(settings.data_dir, configured)
    refresh_secret = (
        parse_secret(settings.refresh_secret.get_secret_value(), "LATCHKEY_REFRESH_SECRET")
        if settings.refresh_secret
        else derive(secret, b"refresh-token")
    )
    sealer = Sealer(secret)
    if settings.redis_url is not None:
        from .redis_backends import RedisRevocations, RedisThrottle

        revocations = revocations or RedisRevocations(settings.redis_url, clock)
        throttle = throttle or RedisThrottle(settings.redis_url, clock, settings.throttle_window)
    return AuthService(
        store=SqlStore.from_url(
            settings.database_url, pool_size=settings.db_pool_size, timeout=settings.db_timeout
        ),
        keyring=KeyRing(
            sealer,
            clock=clock,
            times=KeyTimes(
                token_lifetime=settings.access_ttl,
                leeway=settings.leeway,
                # An instance learns of a new key at its next reload; allow one late reload.
                propagation=2 * settings.key_refresh_interval,
            ),
        ),
        sealer=sealer,
        refresh_codec=RefreshTokenCodec(refresh_secret),
        hasher=PasswordHasher(
            Argon2Parameters(
                time_cost=settings.argon2_time_cost,
                memory_cost=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
            )
        ),
        policy=SessionPolicy(
            refresh_ttl=settings.refresh_ttl,
            session_ttl=settings.session_ttl,
            grace=settings.refresh_grace,
        ),
        clock=clock,
        issuer=settings.issuer,
        audience=settings.audience,
        access_ttl=settings.access_ttl,
        leeway=settings.leeway,
        signing_alg=settings.signing_alg,
        imported_key=(
            load_signing_key(settings.signing_key_file) if settings.signing_key_file else None
        ),
        events=events or NullEvents(),
        revocations=revocations or LocalRevocations(clock),
        throttle=throttle or LocalThrottle(clock, settings.throttle_window),
        limits=ThrottleLimits(
            account=settings.throttle_account_failures,
            address=settings.throttle_address_failures,
            registrations=settings.throttle_registrations,
        ),
        allow_registration=settings.allow_registration,
        key_rotation=KeyRotation(
            prepublish=settings.key_prepublish, interval=settings.key_rotation_interval
        ),
        housekeeping=Housekeeping(
            audit_retention=settings.audit_retention,
            audit_refreshes=settings.audit_refreshes,
        ),
    )


def _private_file(path: Path | None) -> None:
    """Create the SQLite file owner-only before SQLite does (it would honour the umask)."""
    if path is not None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


async def prepare(service: AuthService) -> None:
    """Apply pending schema migrations (idempotent), then load or create the signing keys."""
    store = service.store
    assert isinstance(store, SqlStore)
    await migrate.upgrade(store.engine)
    await service.load_keys(create=True)
