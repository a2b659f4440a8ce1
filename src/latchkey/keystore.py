"""Key material on disk: the signing key and the refresh-token secret in ``DATA_DIR``.

Files are created with mode 0600 and published atomically (``os.link`` of a finished temp
file), so that two processes starting at once agree on one key.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from .core.b64 import Base64Error, b64url_decode
from .core.errors import ConfigurationError
from .core.keys import Algorithm, SigningKey
from .core.refresh import MIN_KEY_BYTES

SIGNING_KEY_FILE = "signing-key.pem"
REFRESH_SECRET_FILE = "refresh-secret.key"


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it exists; ``True`` if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def _read_private(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc


def load_signing_key(path: Path) -> SigningKey:
    return SigningKey.from_pem(_read_private(path))


def load_or_create_signing_key(data_dir: Path, alg: Algorithm = "RS256") -> SigningKey:
    path = data_dir / SIGNING_KEY_FILE
    if not path.exists():
        _create_exclusive(path, SigningKey.generate(alg).private_pem())
    return load_signing_key(path)


def load_or_create_refresh_secret(data_dir: Path, configured: str | None = None) -> bytes:
    if configured is not None:
        try:
            secret = b64url_decode(configured.strip().rstrip("="))
        except Base64Error as exc:
            raise ConfigurationError("LATCHKEY_REFRESH_SECRET: not base64url") from exc
        if len(secret) < MIN_KEY_BYTES:
            raise ConfigurationError(
                f"LATCHKEY_REFRESH_SECRET: needs at least {MIN_KEY_BYTES} random bytes"
            )
        return secret
    path = data_dir / REFRESH_SECRET_FILE
    if not path.exists():
        _create_exclusive(path, secrets.token_bytes(MIN_KEY_BYTES))
    secret = _read_private(path)
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(f"{path}: too short to be a refresh-token secret")
    return secret
