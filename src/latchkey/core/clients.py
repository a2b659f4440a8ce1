"""Registered clients — the resource servers that may call ``/oauth/introspect`` — and their
secrets, as pure data and functions.

A client secret is made by the server (32 random bytes, shown once) and stored only as its
SHA-256. Like a refresh token it is a high-entropy secret, so a fast hash is enough: there is
no dictionary to try offline, and a database dump yields nothing usable. Secrets are compared
as digests in constant time, and an unknown client costs the same comparison as a known one.

Client authentication follows RFC 6749 §2.3.1: HTTP Basic over the form-urlencoded id and
secret (``client_secret_basic``, :func:`parse_basic`) or the ``client_id`` and
``client_secret`` body parameters (``client_secret_post``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import unquote_plus

from .b64 import b64url_encode
from .errors import InvalidClient, InvalidRequest

CLIENT_ID_BYTES = 16
SECRET_BYTES = 32
SECRET_PREFIX = "lkcs."  # recognisable by secret scanners, like refresh tokens' "lkrt."
MAX_NAME_LENGTH = 255
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    secret_hash: bytes
    created_at: float

    def __repr__(self) -> str:  # never print the hash
        return f"Client(id={self.id!r}, name={self.name!r})"


def hash_secret(secret: str) -> bytes:
    """What the store keeps of a secret."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


# Compared against when the client is unknown, so that both cases take the same time.
_NO_CLIENT = hash_secret(SECRET_PREFIX + "no such client")


def new_client(name: str, now: float) -> tuple[Client, str]:
    """A new client and its secret; the secret exists only in the return value."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidRequest(f"A client name has 1 to {MAX_NAME_LENGTH} printable characters.")
    secret = SECRET_PREFIX + b64url_encode(secrets.token_bytes(SECRET_BYTES))
    client = Client(
        id=secrets.token_hex(CLIENT_ID_BYTES),
        name=name,
        secret_hash=hash_secret(secret),
        created_at=now,
    )
    return client, secret


def is_client_id(text: str) -> bool:
    """Whether ``text`` could be one of our client ids (checked before any query: PostgreSQL
    refuses text with NUL, and nothing else can name a client)."""
    return len(text) == 2 * CLIENT_ID_BYTES and _HEX.issuperset(text)


def secret_matches(client: Client | None, secret: str) -> bool:
    """Whether ``secret`` is the client's, in constant time (ASVS v5 V11)."""
    expected = client.secret_hash if client is not None else _NO_CLIENT
    same = hmac.compare_digest(hash_secret(secret), expected)
    return same and client is not None


def parse_basic(authorization: str) -> tuple[str, str]:
    """``(client_id, client_secret)`` of an ``Authorization: Basic …`` header (RFC 7617 §2),
    each form-urlencoded as RFC 6749 §2.3.1 requires. Anything else: :class:`InvalidClient`."""
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient()
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            raise InvalidClient()
        return (
            unquote_plus(client_id, errors="strict"),
            unquote_plus(secret, errors="strict"),
        )
    except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8
        raise InvalidClient() from None
