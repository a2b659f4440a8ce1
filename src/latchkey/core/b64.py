"""Canonical base64url without padding (RFC 7515 §2, RFC 4648 §5).

Decoding is strict: only the URL-safe alphabet, no padding, no whitespace, and the unused
bits of the last character must be zero, so that every byte string has exactly one accepted
encoding (no malleable tokens).
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
# Last character of a 2-char tail (1 byte) may only carry 2 significant bits; of a 3-char
# tail (2 bytes) 4 significant bits. Everything else would decode to the same bytes.
_LAST_OF_2 = frozenset("AQgw")
_LAST_OF_3 = frozenset("AEIMQUYcgkosw048")


class Base64Error(ValueError):
    """Not canonical base64url."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    tail = len(text) % 4
    if tail == 1 or _ALPHABET.fullmatch(text) is None:
        raise Base64Error("not base64url")
    if tail == 2:
        if text[-1] not in _LAST_OF_2:
            raise Base64Error("non-canonical base64url")
        text += "=="
    elif tail == 3:
        if text[-1] not in _LAST_OF_3:
            raise Base64Error("non-canonical base64url")
        text += "="
    try:
        return base64.urlsafe_b64decode(text)
    except binascii.Error as exc:  # pragma: no cover - excluded by the checks above
        raise Base64Error("not base64url") from exc
