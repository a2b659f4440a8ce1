"""Refresh tokens: opaque to clients, self-describing and authenticated for the server.

Wire form (docs/design.md §2)::

    lkrt.<base64url( sid[16] | generation[8] | secret[32] | mac[16] )>

- ``mac`` = HMAC-SHA256(mac_key, sid | generation | secret), truncated to 128 bits. A token the
  server never issued fails here, before any lookup, so a forged or tampered token has no
  side effect on any session; a genuine but old one can be recognised as reuse.
- The database stores only ``SHA-256(sid | generation | secret)`` of the current and the
  previous token (ASVS v5 V7.2; RFC 9700 §4.14). The secrets are
  256-bit random-equivalent, so a fast hash is adequate (no offline guessing is possible).
- A successor's secret is ``HMAC-SHA256(derive_key, previous_secret | nonce)`` with a fresh
  random nonce kept on the session row. Within the grace window the server recomputes the
  *same* successor from the presented previous token and the stored nonce, so a retry never
  forks the session — and still nothing in the database alone yields a usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from .b64 import Base64Error, b64url_decode, b64url_encode
from .errors import ConfigurationError, RefreshTokenInvalid

PREFIX = "lkrt."
SID_BYTES = 16
SECRET_BYTES = 32
MAC_BYTES = 16
NONCE_BYTES = 16
_BODY_BYTES = SID_BYTES + 8 + SECRET_BYTES + MAC_BYTES
_TOKEN_LENGTH = len(PREFIX) + (_BODY_BYTES * 4 + 2) // 3
MIN_KEY_BYTES = 32


@dataclass(frozen=True, slots=True, repr=False)
class RefreshToken:
    """A parsed, MAC-verified refresh token."""

    sid: str  # hex
    generation: int
    secret: bytes

    def __repr__(self) -> str:
        return f"RefreshToken(sid={self.sid!r}, generation={self.generation}, secret=***)"

    @property
    def digest(self) -> bytes:
        """What the store keeps: SHA-256 over the token's fields."""
        return hashlib.sha256(_fields(self.sid, self.generation, self.secret)).digest()


def _fields(sid: str, generation: int, secret: bytes) -> bytes:
    return bytes.fromhex(sid) + generation.to_bytes(8, "big") + secret


class RefreshTokenCodec:
    """Mints, parses and derives refresh tokens under one server secret."""

    __slots__ = ("_derive_key", "_mac_key")

    def __init__(self, server_secret: bytes) -> None:
        if len(server_secret) < MIN_KEY_BYTES:
            raise ConfigurationError(f"the refresh-token secret needs {MIN_KEY_BYTES}+ bytes")
        # Separate keys per purpose, derived from one secret (HKDF-Expand-like labels).
        self._mac_key = hmac.digest(server_secret, b"latchkey/refresh/mac", "sha256")
        self._derive_key = hmac.digest(server_secret, b"latchkey/refresh/derive", "sha256")

    def new_sid(self) -> str:
        return secrets.token_bytes(SID_BYTES).hex()

    def first(self, sid: str) -> RefreshToken:
        return RefreshToken(sid, 0, secrets.token_bytes(SECRET_BYTES))

    def successor(self, token: RefreshToken, nonce: bytes) -> RefreshToken:
        secret = hmac.digest(self._derive_key, token.secret + nonce, "sha256")
        return RefreshToken(token.sid, token.generation + 1, secret)

    def encode(self, token: RefreshToken) -> str:
        body = _fields(token.sid, token.generation, token.secret)
        mac = hmac.digest(self._mac_key, body, "sha256")[:MAC_BYTES]
        return PREFIX + b64url_encode(body + mac)

    def decode(self, text: object) -> RefreshToken:
        """Parse and authenticate; raises :class:`RefreshTokenInvalid` with no side effect."""
        if type(text) is not str or len(text) != _TOKEN_LENGTH or not text.startswith(PREFIX):
            raise RefreshTokenInvalid()
        try:
            raw = b64url_decode(text[len(PREFIX) :])
        except Base64Error as exc:
            raise RefreshTokenInvalid() from exc
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        expected = hmac.digest(self._mac_key, body, "sha256")[:MAC_BYTES]
        if not hmac.compare_digest(mac, expected):  # constant time (ASVS v5 V11)
            raise RefreshTokenInvalid()
        sid = body[:SID_BYTES].hex()
        generation = int.from_bytes(body[SID_BYTES : SID_BYTES + 8], "big")
        return RefreshToken(sid, generation, body[SID_BYTES + 8 :])
