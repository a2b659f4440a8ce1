"""Sealing secrets at rest: AES-256-GCM under a key derived from the deployment secret.

Instances share signing keys through the database without a shared file system; the private
keys are stored sealed, and the deployment secret (``LATCHKEY_SECRET_KEY``) never enters the
database (ASVS v5 V11.2, V13.3: secrets encrypted at rest, key kept apart from the data).
"""

from __future__ import annotations

import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigurationError

MIN_SECRET_BYTES = 32
_NONCE_BYTES = 12
_VERSION = b"\x01"


def derive(secret: bytes, label: bytes) -> bytes:
    """A 32-byte key for one purpose (HKDF-Expand-like: HMAC-SHA256 under a label)."""
    return hmac.digest(secret, b"latchkey/" + label, "sha256")


class Sealer:
    """Encrypts and authenticates small secrets; ``context`` binds a box to its owner."""

    __slots__ = ("_aead",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigurationError(
                f"LATCHKEY_SECRET_KEY: needs at least {MIN_SECRET_BYTES} random bytes"
            )
        self._aead = AESGCM(derive(secret, b"seal/aes-256-gcm"))

    def __repr__(self) -> str:
        return "Sealer(***)"

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _VERSION + context)

    def open(self, box: bytes, context: bytes) -> bytes:
        if box[:1] != _VERSION or len(box) < 1 + _NONCE_BYTES + 16:
            raise ConfigurationError("a sealed key has an unknown format")
        nonce, ciphertext = box[1 : 1 + _NONCE_BYTES], box[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, _VERSION + context)
        except InvalidTag as exc:
            raise ConfigurationError(
                "cannot open a stored signing key: LATCHKEY_SECRET_KEY differs from the one "
                "the keys were sealed with"
            ) from exc
