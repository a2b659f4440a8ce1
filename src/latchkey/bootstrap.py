"""The one place that wires settings → store → service."""

from __future__ import annotations

from .core.clock import Clock, SystemClock
from .core.passwords import Argon2Parameters, PasswordHasher
from .core.refresh import RefreshTokenCodec
from .core.sessions import SessionPolicy
from .keystore import (
    load_or_create_refresh_secret,
    load_or_create_signing_key,
    load_signing_key,
)
from .service import AuthService
from .settings import Settings
from .store import migrate
from .store.sql import SqlStore


def build_service(settings: Settings, clock: Clock | None = None) -> AuthService:
    """Everything but the schema: see :func:`prepare` for that."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.signing_key_file is not None:
        signing_key = load_signing_key(settings.signing_key_file)
    else:
        signing_key = load_or_create_signing_key(settings.data_dir, settings.signing_alg)
    configured = settings.refresh_secret.get_secret_value() if settings.refresh_secret else None
    secret = load_or_create_refresh_secret(settings.data_dir, configured)
    return AuthService(
        store=SqlStore.from_url(settings.database_url),
        signing_key=signing_key,
        refresh_codec=RefreshTokenCodec(secret),
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
        clock=clock or SystemClock(),
        issuer=settings.issuer,
        audience=settings.audience,
        access_ttl=settings.access_ttl,
        leeway=settings.leeway,
    )


async def prepare(service: AuthService) -> None:
    """Apply pending schema migrations (idempotent)."""
    store = service.store
    assert isinstance(store, SqlStore)
    await migrate.upgrade(store.engine)
