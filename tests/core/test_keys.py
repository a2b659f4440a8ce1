"""Keys: RFC 7638 thumbprints as kid, one pinned algorithm per key, strict loading."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from latchkey.core.b64 import b64url_encode
from latchkey.core.errors import ConfigurationError
from latchkey.core.keys import ALGORITHMS, SigningKey, VerificationKey, thumbprint

# RFC 7638 §3.1: the example RSA key and its SHA-256 JWK thumbprint.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
    "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
# RFC 8037 Appendix A.2/A.3: the example Ed25519 public key and its thumbprint.
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

KID_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of 32 octets


def _pem(private_key: object, fmt: serialization.PrivateFormat) -> bytes:
    return private_key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    )


def _public_jwk(key: SigningKey) -> dict[str, str]:
    jwk = key.public.to_jwk()
    del jwk["kid"], jwk["alg"], jwk["use"]
    return jwk


# --- thumbprints ------------------------------------------------------------------------------


def test_rfc7638_thumbprint_vector() -> None:
    """The RSA key of RFC 7638 §3.1 gets the thumbprint the RFC gives as its kid."""
    key = VerificationKey.from_jwk({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
    assert key.kid == RFC7638_THUMBPRINT
    assert thumbprint(key.key) == RFC7638_THUMBPRINT
    assert key.alg == "RS256"


def test_rfc7638_thumbprint_ignores_optional_members() -> None:
    """The RFC 7638 JWK with its alg and kid members keeps the stated kid but the same print."""
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    key = VerificationKey.from_jwk(jwk)
    assert key.kid == "2011-04-29"
    assert thumbprint(key.key) == RFC7638_THUMBPRINT


def test_rfc8037_ed25519_thumbprint_vector() -> None:
    """The Ed25519 key of RFC 8037 Appendix A.2 has the thumbprint of Appendix A.3."""
    key = VerificationKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X})
    assert key.kid == RFC8037_THUMBPRINT
    assert key.alg == "EdDSA"


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_kid_is_stable_for_generated_keys(keys: dict[str, SigningKey], alg: str) -> None:
    """A key's kid is its thumbprint, the same after PEM reload and JWK export without kid."""
    key = keys[alg]
    assert KID_SHAPE.match(key.kid)
    assert key.kid == key.public.kid == thumbprint(key.public.key)
    assert SigningKey.from_pem(key.private_pem()).kid == key.kid
    assert VerificationKey.from_jwk(_public_jwk(key)).kid == key.kid
    assert VerificationKey.from_public_key(key.public.key).kid == key.kid


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_different_keys_get_different_kids(keys: dict[str, SigningKey], alg: str) -> None:
    """Two keys of the same algorithm never share a kid."""
    if alg == "RS256":
        other = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    else:
        other = SigningKey.generate(alg)  # type: ignore[arg-type]
    assert other.kid != keys[alg].kid


# --- PEM loading and the pinned algorithm -----------------------------------------------------


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_from_pem_rsa_is_rs256(
    keys: dict[str, SigningKey], fmt: serialization.PrivateFormat
) -> None:
    """An RSA private key in PKCS#8 or PKCS#1 PEM loads as an RS256 key."""
    pem = keys["RS256"].private_pem()
    private = serialization.load_pem_private_key(pem, password=None)
    key = SigningKey.from_pem(_pem(private, fmt))
    assert key.alg == "RS256"
    assert isinstance(key.public.key, rsa.RSAPublicKey)


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_from_pem_ec_p256_is_es256(fmt: serialization.PrivateFormat) -> None:
    """An EC P-256 private key in PKCS#8 or SEC1 PEM loads as an ES256 key."""
    key = SigningKey.from_pem(_pem(ec.generate_private_key(ec.SECP256R1()), fmt))
    assert key.alg == "ES256"


def test_from_pem_ed25519_is_eddsa() -> None:
    """An Ed25519 private key in PKCS#8 PEM loads as an EdDSA key."""
    pem = _pem(ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
    assert SigningKey.from_pem(pem).alg == "EdDSA"


def test_rsa_1024_is_refused() -> None:
    """A 1024-bit RSA key is refused as PEM, as a key object and as a JWK (RFC 7518 §3.3)."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(_pem(weak, serialization.PrivateFormat.PKCS8))
    with pytest.raises(ConfigurationError):
        SigningKey(weak)
    numbers = weak.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": b64url_encode(numbers.n.to_bytes(128, "big")),
        "e": b64url_encode(numbers.e.to_bytes(3, "big")),
    }
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk(jwk)


def test_rsa_2048_is_the_minimum_accepted() -> None:
    """An RSA key of exactly 2048 bits is accepted."""
    key = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert key.alg == "RS256"


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1(), ec.SECP256K1()])
def test_ec_curves_other_than_p256_are_refused(curve: ec.EllipticCurve) -> None:
    """EC keys on P-384, P-521 or secp256k1 are refused: only P-256 (ES256) is supported."""
    private = ec.generate_private_key(curve)
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(_pem(private, serialization.PrivateFormat.PKCS8))
    with pytest.raises(ConfigurationError):
        VerificationKey.from_public_key(private.public_key())


def test_p384_jwk_is_refused() -> None:
    """A JWK with crv P-384 is refused."""
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-384",
        "x": b64url_encode(numbers.x.to_bytes(48, "big")),
        "y": b64url_encode(numbers.y.to_bytes(48, "big")),
    }
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk(jwk)


def test_ed448_pem_is_refused() -> None:
    """An Ed448 key is refused: EdDSA here means Ed25519 only."""
    pem = _pem(ed448.Ed448PrivateKey.generate(), serialization.PrivateFormat.PKCS8)
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(pem)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a pem",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_from_pem_refuses_garbage(pem: bytes) -> None:
    """Bytes that are not a PEM private key raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(pem)


def test_from_pem_refuses_encrypted_key() -> None:
    """A password-protected PEM is refused (no password is ever passed)."""
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret-password"),
    )
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(pem)


def test_generate_refuses_unknown_algorithm() -> None:
    """SigningKey.generate only knows RS256, ES256 and EdDSA."""
    for alg in ("HS256", "none", "RS384", "ES384"):
        with pytest.raises(ConfigurationError):
            SigningKey.generate(alg)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_sign_then_verify(keys: dict[str, SigningKey], alg: str) -> None:
    """A key's signature verifies with its public key and fails for other data."""
    key = keys[alg]
    signature = key.sign(b"header.payload")
    assert key.public.verify(signature, b"header.payload")
    assert not key.public.verify(signature, b"header.payloaD")


def test_es256_signature_is_raw_r_s() -> None:
    """ES256 signatures are R || S, 64 octets, and a DER-encoded signature does not verify."""
    private = ec.generate_private_key(ec.SECP256R1())
    key = SigningKey(private)
    signature = key.sign(b"data")
    assert len(signature) == 64
    der = private.sign(b"data", ec.ECDSA(hashes.SHA256()))
    assert not key.public.verify(der, b"data")


# --- JWK ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_jwk_roundtrip(keys: dict[str, SigningKey], alg: str) -> None:
    """to_jwk then from_jwk yields the same kid, algorithm and public key."""
    public = keys[alg].public
    jwk = public.to_jwk()
    assert jwk["kid"] == public.kid and jwk["alg"] == alg and jwk["use"] == "sig"
    again = VerificationKey.from_jwk(jwk)
    assert again == public  # kid, alg and key; the verify function is not compared
    assert again.verify(keys[alg].sign(b"x"), b"x")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_jwk_holds_no_private_members(keys: dict[str, SigningKey], alg: str) -> None:
    """The exported JWK has no d, p, q, dp, dq or qi member."""
    jwk = keys[alg].public.to_jwk()
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


def test_from_jwk_refuses_oct() -> None:
    """A symmetric kty 'oct' JWK is refused (RFC 8725 §3.2)."""
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"})


@pytest.mark.parametrize(
    ("alg", "declared"),
    [
        ("RS256", "ES256"),
        ("RS256", "HS256"),
        ("RS256", "RS384"),
        ("RS256", "PS256"),
        ("RS256", "none"),
        ("ES256", "RS256"),
        ("ES256", "ES384"),
        ("EdDSA", "ES256"),
        ("EdDSA", "Ed25519"),
    ],
)
def test_from_jwk_refuses_alg_that_does_not_fit(
    keys: dict[str, SigningKey], alg: str, declared: str
) -> None:
    """A JWK whose alg member differs from the algorithm its key allows is refused."""
    jwk = {**_public_jwk(keys[alg]), "alg": declared}
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk(jwk)


def test_from_jwk_refuses_encryption_key(keys: dict[str, SigningKey]) -> None:
    """A JWK with use 'enc' is not a signature key."""
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk({**_public_jwk(keys["ES256"]), "use": "enc"})


@pytest.mark.parametrize("kid", ["", 42, None, ["a"]])
def test_from_jwk_refuses_bad_kid(keys: dict[str, SigningKey], kid: object) -> None:
    """A JWK kid must be a non-empty string."""
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk({**_public_jwk(keys["EdDSA"]), "kid": kid})


@pytest.mark.parametrize(
    "jwk",
    [
        {},
        {"kty": "RSA", "e": "AQAB"},
        {"kty": "RSA", "n": RFC7638_N},
        {"kty": "RSA", "n": RFC7638_N + "==", "e": "AQAB"},
        {"kty": "RSA", "n": 12345, "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "x": "AAAA"},
        {"kty": "EC", "crv": "P-256", "x": "AQ", "y": "Ag"},  # not a point on the curve
        {"kty": "OKP", "crv": "Ed25519"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},  # 3 octets, not 32
        {"kty": "OKP", "crv": "X25519", "x": RFC8037_X},
        {"kty": "OKP", "crv": "Ed448", "x": RFC8037_X},
        {"kty": "EC", "crv": "P-521", "x": "AQ", "y": "Ag"},
        {"kty": "DSA"},
    ],
)
def test_from_jwk_refuses_malformed(jwk: dict[str, object]) -> None:
    """Missing members, bad base64url, off-curve points and unknown types raise
    ConfigurationError."""
    with pytest.raises(ConfigurationError):
        VerificationKey.from_jwk(jwk)


# --- no key material in repr -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_signing_key_repr_shows_no_key_material(keys: dict[str, SigningKey], alg: str) -> None:
    """repr and str of a SigningKey show kid and alg, never the private key."""
    key = keys[alg]
    pem = key.private_pem().decode()
    body = "".join(pem.strip().splitlines()[1:-1])
    for text in (repr(key), str(key)):
        assert key.kid in text and alg in text
        assert "PRIVATE" not in text
        assert body[:16] not in text and body[-16:] not in text
    if alg == "RS256":
        private = serialization.load_pem_private_key(key.private_pem(), password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        d = private.private_numbers().d
        assert str(d)[:20] not in repr(key) and format(d, "x")[:20] not in repr(key)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_verification_key_repr_shows_only_kid_and_alg(
    keys: dict[str, SigningKey], alg: str
) -> None:
    """repr of a VerificationKey names kid and alg and leaves the key object out."""
    text = repr(keys[alg].public)
    assert keys[alg].kid in text and alg in text
    assert "key=" not in text.replace("VerificationKey(", "")
