"""The deployment secret and an optional signing-key file.

The deployment secret (``LATCHKEY_SECRET_KEY``, base64url, ≥ 32 random bytes) seals the
private signing keys stored in the database and derives the refresh-token MAC key. With the
embedded SQLite default it may be left unset: it is then generated on first start into
``DATA_DIR/secret.key`` (mode 0600), published atomically (``os.link`` of a finished temp
file) so that two processes starting at once agree on one secret.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from ..core.b64 import Base64Error, b64url_decode, b64url_encode
from ..core.errors import ConfigurationError
from ..core.keys import SigningKey
from ..core.sealing import MIN_SECRET_BYTES

SECRET_FILE = "secret.key"


def new_secret() -> str:
    """A fresh value for ``LATCHKEY_SECRET_KEY``."""
    return b64url_encode(secrets.token_bytes(MIN_SECRET_BYTES))


def parse_secret(text: str, name: str = "LATCHKEY_SECRET_KEY") -> bytes:
    try:
        secret = b64url_decode(text.strip().rstrip("="))
    except Base64Error as exc:
        raise ConfigurationError(f"{name}: not base64url") from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"{name}: needs at least {MIN_SECRET_BYTES} random bytes")
    return secret


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


def load_or_create_secret(data_dir: Path, configured: str | None, *, create: bool = True) -> bytes:
    """The configured secret, else the one in ``DATA_DIR/secret.key``, made there first if
    missing and ``create``; without ``create`` a missing file is an error naming it."""
    if configured is not None:
        return parse_secret(configured)
    path = data_dir / SECRET_FILE
    if not path.exists():
        if not create:
            raise ConfigurationError(
                f"no secret key at {path.resolve()}: the signing keys in the database are "
                "sealed with it. Set LATCHKEY_SECRET_KEY or LATCHKEY_DATA_DIR to the "
                "service's, or restore the file"
            )
        _create_exclusive(path, new_secret().encode("ascii"))
    return parse_secret(_read_private(path).decode("ascii", "replace"), str(path))


def load_signing_key(path: Path) -> SigningKey:
    """The key of ``LATCHKEY_SIGNING_KEY_FILE``; an error names the variable and the file."""
    try:
        return SigningKey.from_pem(_read_private(path))
    except ConfigurationError as exc:
        detail = exc.description.removeprefix(f"cannot read {path}: ")
        raise ConfigurationError(f"LATCHKEY_SIGNING_KEY_FILE: {path}: {detail}") from exc
