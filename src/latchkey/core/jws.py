"""JWS Compact Serialization (RFC 7515 §7.1), signing side.

The verifying side lives in :mod:`latchkey.core.verifier`, where parsing and checking are
fused into one strict pass.
"""

from __future__ import annotations

import json
from typing import Any

from .b64 import b64url_encode
from .keys import SigningKey


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class CompactSigner:
    """Signs payloads with one key; the header segment is built once."""

    __slots__ = ("_header", "key")

    def __init__(self, key: SigningKey, typ: str) -> None:
        self.key = key
        # RFC 9068 §2.1: typ "at+jwt"; kid names the key in our JWKS.
        self._header = b64url_encode(encode_json({"alg": key.alg, "kid": key.kid, "typ": typ}))

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{b64url_encode(encode_json(claims))}"
        signature = self.key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64url_encode(signature)}"
