"""Signing and verification keys, each bound to exactly one JWS algorithm.

The algorithm is a property of the key, decided when the key is loaded — never read from a
token (RFC 8725 §2.1, §3.1). ``kid`` is the RFC 7638 JWK thumbprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .b64 import Base64Error, b64url_decode, b64url_encode
from .errors import ConfigurationError

Algorithm = Literal["RS256", "ES256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("RS256", "ES256", "EdDSA")
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

MIN_RSA_BITS = 2048  # RFC 7518 §3.3: a key of size 2048 bits or larger MUST be used.

_PKCS1 = padding.PKCS1v15()
_SHA256 = hashes.SHA256()
_ECDSA = ec.ECDSA(hashes.SHA256())


def _int_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _b64_int(text: object) -> int:
    if not isinstance(text, str):
        raise ValueError("expected a base64url string")
    return int.from_bytes(b64url_decode(text), "big")


def public_jwk_members(key: PublicKey) -> dict[str, str]:
    """The required public members of the key's JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        numbers_ec = key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url_encode(numbers_ec.x.to_bytes(32, "big")),
            "y": b64url_encode(numbers_ec.y.to_bytes(32, "big")),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}


def thumbprint(key: PublicKey) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    members = public_jwk_members(key)
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def algorithm_for(key: PublicKey) -> Algorithm:
    """The one algorithm a key may be used with; refuses keys too weak or of other curves."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError("only EC keys on P-256 (ES256) are supported")
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ConfigurationError("unsupported key type: use RSA, EC P-256 or Ed25519")


def _verifier_for(key: PublicKey, alg: Algorithm) -> Callable[[bytes, bytes], bool]:
    """A function ``(signature, signing_input) -> bool`` fixed to this key and algorithm."""
    if alg == "RS256":
        assert isinstance(key, rsa.RSAPublicKey)
        rsa_key = key

        def verify_rs256(signature: bytes, data: bytes) -> bool:
            try:
                rsa_key.verify(signature, data, _PKCS1, _SHA256)
            except InvalidSignature:
                return False
            return True

        return verify_rs256
    if alg == "ES256":
        assert isinstance(key, ec.EllipticCurvePublicKey)
        ec_key = key

        def verify_es256(signature: bytes, data: bytes) -> bool:
            # RFC 7518 §3.4: R || S, each exactly 32 octets.
            if len(signature) != 64:
                return False
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            try:
                ec_key.verify(encode_dss_signature(r, s), data, _ECDSA)
            except InvalidSignature:
                return False
            return True

        return verify_es256
    assert isinstance(key, ed25519.Ed25519PublicKey)
    ed_key = key

    def verify_eddsa(signature: bytes, data: bytes) -> bool:
        try:
            ed_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    return verify_eddsa


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key with its pinned algorithm and ``kid``; parsed once, used many times."""

    kid: str
    alg: Algorithm
    key: PublicKey = field(repr=False)
    verify: Callable[[bytes, bytes], bool] = field(repr=False, compare=False)

    @classmethod
    def from_public_key(cls, key: PublicKey, kid: str | None = None) -> VerificationKey:
        alg = algorithm_for(key)
        return cls(kid=kid or thumbprint(key), alg=alg, key=key, verify=_verifier_for(key, alg))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Parse one public JWK. Symmetric (``oct``) keys are refused (RFC 8725 §3.2)."""
        kty = jwk.get("kty")
        try:
            key: PublicKey
            if kty == "RSA":
                key = rsa.RSAPublicNumbers(_b64_int(jwk["e"]), _b64_int(jwk["n"])).public_key()
            elif kty == "EC" and jwk.get("crv") == "P-256":
                key = ec.EllipticCurvePublicNumbers(
                    _b64_int(jwk["x"]), _b64_int(jwk["y"]), ec.SECP256R1()
                ).public_key()
            elif kty == "OKP" and jwk.get("crv") == "Ed25519":
                key = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
            else:
                raise ConfigurationError(f"unsupported JWK type {kty!r}")
        except (KeyError, ValueError, TypeError, Base64Error) as exc:
            raise ConfigurationError(f"malformed JWK: {exc}") from exc
        vkey = cls.from_public_key(key, kid=None)
        kid = jwk.get("kid", vkey.kid)
        if not isinstance(kid, str) or not kid:
            raise ConfigurationError("JWK kid must be a non-empty string")
        declared = jwk.get("alg")
        if declared is not None and declared != vkey.alg:
            raise ConfigurationError(f"JWK alg {declared!r} does not fit its {kty} key")
        if jwk.get("use", "sig") != "sig":
            raise ConfigurationError("JWK is not a signature key")
        return cls(kid=kid, alg=vkey.alg, key=key, verify=vkey.verify)

    def to_jwk(self) -> dict[str, str]:
        return {**public_jwk_members(self.key), "kid": self.kid, "alg": self.alg, "use": "sig"}


class SigningKey:
    """A private key that signs with its one algorithm. ``repr`` never shows key material."""

    __slots__ = ("_key", "alg", "kid", "public")

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.public = VerificationKey.from_public_key(key.public_key())
        self.kid = self.public.kid
        self.alg: Algorithm = self.public.alg

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, _PKCS1, _SHA256)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, _ECDSA))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return key.sign(data)

    def private_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def generate(cls, alg: Algorithm = "RS256") -> SigningKey:
        if alg == "RS256":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS))
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        raise ConfigurationError(f"unsupported algorithm {alg!r}")

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise ConfigurationError("unsupported key type: use RSA, EC P-256 or Ed25519")
        return cls(key)
