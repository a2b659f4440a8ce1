"""Configuration from ``LATCHKEY_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

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


Duration = Annotated[int, BeforeValidator(_duration)]


class Settings(BaseSettings):
    """Every setting, its default and its bounds. See the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Path("latchkey-data")
    database_url: str = ""  # default: sqlite:///<data_dir>/latchkey.db
    issuer: Annotated[str, AfterValidator(_url)] = "http://127.0.0.1:8000"
    audience: str = Field(default="latchkey", min_length=1)
    access_ttl: Duration = Field(default=900, ge=10, le=86400)
    refresh_ttl: Duration = Field(default=7 * 86400, ge=60)
    session_ttl: Duration = Field(default=30 * 86400, ge=60)
    refresh_grace: Duration = Field(default=10, ge=0, le=300)
    leeway: Duration = Field(default=0, ge=0, le=300)
    signing_key_file: Path | None = None
    signing_alg: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    refresh_secret: SecretStr | None = None
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_kib: int = Field(default=65536, ge=8, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(default=4, ge=1, le=64)
    max_body_bytes: int = Field(default=16384, ge=1024, le=1024 * 1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.refresh_ttl > self.session_ttl:
            raise ValueError("LATCHKEY_REFRESH_TTL must not exceed LATCHKEY_SESSION_TTL")
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'latchkey.db'}"
        elif not self.database_url.startswith(("sqlite://", "sqlite+aiosqlite://")):
            raise ValueError(
                "LATCHKEY_DATABASE_URL: only sqlite:/// URLs are supported in this version"
            )
        return self


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
