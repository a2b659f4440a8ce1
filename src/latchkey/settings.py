"""Configuration from ``LATCHKEY_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

ENV_PREFIX = "LATCHKEY_"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")


def _duration(value: Any) -> Any:
    """Seconds as an integer, or with a unit: ``900``, ``15m``, ``12h``, ``30d``."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError("expected seconds or a duration such as 15m, 12h, 7d")
        return int(match[1]) * _UNITS[match[2] or "s"]
    return value


def _url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError("expected an http(s) URL without query or fragment")
    return value.rstrip("/") if value.count("/") > 2 else value


def _host_port(value: str) -> str:
    if value and split_host_port(value) is None:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9000 or [::1]:9000 (empty: off)")
    return value


def split_host_port(value: str) -> tuple[str, int] | None:
    """``127.0.0.1:9000`` or ``[::1]:9000`` as (host, port); ``None`` when malformed."""
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})", value.strip())
    if match is None or not 0 < int(match[2]) < 65536:
        return None
    return match[1].strip("[]"), int(match[2])


_DEFAULT_PORTS = {"http": 80, "https": 443}
_ORIGIN = re.compile(
    r"https?://([a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE
)


def origin_of(url: str) -> str:
    """The origin (RFC 6454 §4) of an http(s) URL, serialised as a browser sends it in
    ``Origin``: lowercase scheme and host, no default port, no path."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal, in the shortest form browsers use (RFC 5952)
        host = f"[{ipaddress.IPv6Address(host).compressed}]"  # ValueError when invalid
    port = parts.port  # ValueError when out of range
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _origin_list(value: Any) -> Any:
    """Comma-separated origins (``https://a.example, https://b.example``), or a JSON list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError("expected origins separated by commas, or a JSON list") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _origin(value: str) -> str:
    if value in ("*", "null"):
        # Never a wildcard with credentials (Fetch, "CORS protocol and credentials"); "null" is
        # what sandboxed frames, file: pages and some redirects send: anyone can be "null".
        raise ValueError(f"{value!r} is refused: list each allowed origin as scheme://host[:port]")
    if _ORIGIN.fullmatch(value) is None:
        raise ValueError(
            f"{value!r} is not an origin: expected http(s)://host[:port], "
            "without path, query or trailing slash"
        )
    try:
        return origin_of(value)
    except ValueError:
        raise ValueError(
            f"{value!r}: the port is out of range, or the IPv6 address invalid"
        ) from None


Duration = Annotated[int, BeforeValidator(_duration)]
Origins = Annotated[
    tuple[Annotated[str, AfterValidator(_origin)], ...], NoDecode, BeforeValidator(_origin_list)
]
_DATABASE_SCHEMES = (
    "sqlite://",
    "sqlite+aiosqlite://",
    "postgresql://",
    "postgres://",
    "postgresql+asyncpg://",
)


class Settings(BaseSettings):
    """Every setting, its default and its bounds. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Path("latchkey-data")
    database_url: str = ""  # default: sqlite:///<data_dir>/latchkey.db
    issuer: Annotated[str, AfterValidator(_url)] = "http://127.0.0.1:8000"
    audience: str = Field(default="latchkey", min_length=1)
    access_ttl: Duration = Field(default=900, ge=1, le=86400)
    refresh_ttl: Duration = Field(default=7 * 86400, ge=60)
    session_ttl: Duration = Field(default=30 * 86400, ge=60)
    # Live sessions one user may hold; a login past it ends the oldest (docs/sessions.md).
    max_sessions_per_user: int = Field(default=100, ge=1, le=100_000)
    refresh_grace: Duration = Field(default=10, ge=0, le=300)
    leeway: Duration = Field(default=0, ge=0, le=300)
    signing_key_file: Path | None = None
    signing_alg: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    refresh_secret: SecretStr | None = None
    secret_key: SecretStr | None = None
    key_refresh_interval: Duration = Field(default=5, ge=1, le=3600)
    # Published this long before it signs: longer than the JWKS max-age (300 s), docs/keys.md.
    key_prepublish: Duration = Field(default=600, ge=0, le=30 * 86400)
    key_rotation_interval: Duration = Field(default=0, ge=0, le=3650 * 86400)  # 0: off
    revocation_poll_interval: float = Field(default=1.0, gt=0, le=60)
    purge_interval: Duration = Field(default=60, ge=1, le=86400)
    audit_retention: Duration = Field(default=90 * 86400, ge=3600)
    audit_refreshes: bool = True
    allow_registration: bool = False
    # Password change, e-mail change and signing out everywhere need a login (or a
    # re-authentication) at most this old (RFC 9470; docs/security.md "Fresh login").
    fresh_auth_max_age: Duration = Field(default=300, ge=0, le=86400)
    # Browsers (docs/browser.md): refresh token in an HttpOnly cookie when a login does not
    # say; other origins allowed to call with credentials (CORS) and to pass the CSRF check.
    cookie_default: bool = False
    cors_origins: Origins = ()
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_timeout: float = Field(default=1.5, gt=0, le=60)
    redis_url: str | None = None
    # Past redis_timeout a call counts as failed: the instance works in process (its own
    # throttle counts, revocations announced later) until Redis answers a probe again. A
    # request waits for Redis at most redis_wait (docs/deployment.md "Redis faults").
    redis_timeout: float = Field(default=0.5, gt=0, le=30)
    redis_wait: float = Field(default=0.05, gt=0, le=30)
    throttle_account_failures: int = Field(default=10, ge=1, le=10_000)
    throttle_address_failures: int = Field(default=100, ge=1, le=100_000)
    throttle_registrations: int = Field(default=20, ge=1, le=100_000)
    throttle_window: Duration = Field(default=900, ge=1, le=86400)
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, ge=1, le=64)
    max_body_bytes: int = Field(default=16384, ge=1024, le=1024 * 1024)
    # Password hashes waiting for a hash thread (one per core) before logins get 429.
    hash_queue: int = Field(default=32, ge=0, le=100_000)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: text on a terminal, JSON lines otherwise (a file, a pipe, the journal)
    log_format: Literal["auto", "json", "text"] = "auto"
    access_log: bool = False  # one line per HTTP request (uvicorn's access log)
    # /metrics and /readyz for the operator, off the public port (docs/deployment.md); "" = off.
    management_addr: Annotated[str, AfterValidator(_host_port)] = "127.0.0.1:9000"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.refresh_ttl > self.session_ttl:
            raise ValueError("LATCHKEY_REFRESH_TTL must not exceed LATCHKEY_SESSION_TTL")
        if 0 < self.key_rotation_interval <= self.key_prepublish:
            # Each new key would be superseded before it ever signed.
            raise ValueError(
                "LATCHKEY_KEY_ROTATION_INTERVAL must be longer than LATCHKEY_KEY_PREPUBLISH "
                "(or 0: no automatic rotation)"
            )
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'latchkey.db'}"
        elif not self.database_url.startswith(_DATABASE_SCHEMES):
            raise ValueError(
                "LATCHKEY_DATABASE_URL: expected sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        if not self.is_sqlite and self.secret_key is None:
            raise ValueError(
                "LATCHKEY_SECRET_KEY: required with PostgreSQL (instances share keys through "
                "the database; generate one with: latchkey keys secret)"
            )
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("LATCHKEY_REDIS_URL: expected redis://HOST:PORT/DB")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """The database file of a ``sqlite:///PATH`` URL (``None`` for in-memory)."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)

    @property
    def database_label(self) -> str:
        """Which database this is, for the operator's eyes: a SQLite file by its absolute
        path, any other URL with its password masked."""
        path = self.sqlite_path
        if path is not None:
            return f"sqlite:///{path.resolve()}"
        return make_url(self.database_url).render_as_string(hide_password=True)


def describe_error(error: ValidationError) -> str:
    """One line per problem, naming the environment variable (no traceback)."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if part]
        message = item["msg"].removeprefix("Value error, ")
        if loc:
            lines.append(f"{ENV_PREFIX}{loc[0].upper()}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)
