"""Published JWS examples verify with latchkey's keys; latchkey's tokens verify with PyJWT.

Vectors, copied from the RFCs (public members of the keys only):

- RFC 7515 Appendix A.2: RS256, the A.2.1 RSA key;
- RFC 7515 Appendix A.3: ES256, the A.3.1 P-256 key;
- RFC 8037 Appendix A.4: EdDSA, the Ed25519 key of A.1/A.2.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from latchkey.core.access import AccessTokenIssuer
from latchkey.core.b64 import b64url_decode, b64url_encode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import ForbiddenHeader
from latchkey.core.keys import ALGORITHMS, SigningKey, VerificationKey
from latchkey.core.verifier import Verifier

# RFC 7515 A.1-A.3 share this payload: {"iss":"joe",\r\n "exp":1300819380,\r\n
# "http://example.com/is_root":true}
RFC7515_PAYLOAD = (
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
)

RFC7515_A2_JWK = {
    "kty": "RSA",
    "n": (
        "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0B"
        "m4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5"
        "z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7"
        "aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
    ),
    "e": "AQAB",
}
RFC7515_A2_JWS = (
    "eyJhbGciOiJSUzI1NiJ9."
    + RFC7515_PAYLOAD
    + ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2F"
    "p5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMH"
    "lb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9Q"
    "OYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
)

RFC7515_A3_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
RFC7515_A3_JWS = (
    "eyJhbGciOiJFUzI1NiJ9."
    + RFC7515_PAYLOAD
    + ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

RFC8037_A4_JWK = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_A4_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)

VECTORS = pytest.mark.parametrize(
    ("jwk", "jws", "alg"),
    [
        pytest.param(RFC7515_A2_JWK, RFC7515_A2_JWS, "RS256", id="rfc7515-A.2-RS256"),
        pytest.param(RFC7515_A3_JWK, RFC7515_A3_JWS, "ES256", id="rfc7515-A.3-ES256"),
        pytest.param(RFC8037_A4_JWK, RFC8037_A4_JWS, "EdDSA", id="rfc8037-A.4-EdDSA"),
    ],
)

ISSUER = "https://auth.example.test"
AUDIENCE = "vectors-api"


def _split(jws: str) -> tuple[bytes, bytes]:
    header, payload, signature = jws.split(".")
    return f"{header}.{payload}".encode("ascii"), b64url_decode(signature)


@VECTORS
def test_rfc_vector_verifies(jwk: dict[str, str], jws: str, alg: str) -> None:
    """The RFC's example JWS verifies with the key built from the RFC's JWK."""
    key = VerificationKey.from_jwk(jwk)
    assert key.alg == alg
    signing_input, signature = _split(jws)
    assert key.verify(signature, signing_input) is True


@VECTORS
def test_rfc_vector_fails_with_one_payload_byte_changed(
    jwk: dict[str, str], jws: str, alg: str
) -> None:
    """Changing any one byte of the decoded payload makes the RFC's signature fail."""
    key = VerificationKey.from_jwk(jwk)
    header, payload, signature = jws.split(".")
    original = b64url_decode(payload)
    for index in (0, len(original) // 2, len(original) - 1):
        changed = bytearray(original)
        changed[index] ^= 0x01
        signing_input = f"{header}.{b64url_encode(bytes(changed))}".encode("ascii")
        assert key.verify(b64url_decode(signature), signing_input) is False


@VECTORS
def test_rfc_vector_fails_with_one_signature_byte_changed(
    jwk: dict[str, str], jws: str, alg: str
) -> None:
    """Changing one byte of the RFC's signature makes it fail."""
    key = VerificationKey.from_jwk(jwk)
    signing_input, signature = _split(jws)
    changed = bytearray(signature)
    changed[len(changed) // 2] ^= 0x80
    assert key.verify(bytes(changed), signing_input) is False


def test_rfc_vector_payloads_are_the_published_ones() -> None:
    """The payloads decode to the octets the RFCs print."""
    assert b64url_decode(RFC7515_PAYLOAD) == (
        b'{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}'
    )
    assert b64url_decode(RFC8037_A4_JWS.split(".")[1]) == b"Example of Ed25519 signing"


def test_rfc_vectors_do_not_cross_verify() -> None:
    """A vector's signature verifies neither under another vector's key nor another header."""
    rsa_key = VerificationKey.from_jwk(RFC7515_A2_JWK)
    ec_key = VerificationKey.from_jwk(RFC7515_A3_JWK)
    a2_input, a2_signature = _split(RFC7515_A2_JWS)
    a3_input, a3_signature = _split(RFC7515_A3_JWS)
    assert not ec_key.verify(a2_signature, a2_input)
    assert not rsa_key.verify(a3_signature, a3_input)
    # The A.3 signature covers the A.3 header: under the RS256 header of A.2 it fails.
    assert not ec_key.verify(a3_signature, a2_input)


@VECTORS
def test_rfc_vector_is_not_a_latchkey_access_token(jwk: dict[str, str], jws: str, alg: str) -> None:
    """The Verifier refuses the RFC examples: their header has neither kid nor typ at+jwt."""
    verifier = Verifier(
        [VerificationKey.from_jwk(jwk)], issuer="joe", audience="any", max_lifetime=None
    )
    with pytest.raises(ForbiddenHeader):
        verifier.verify(jws)


# --- interoperability with PyJWT -----------------------------------------------------------


def _private_key(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | Any:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_latchkey_tokens_verify_with_pyjwt(keys: dict[str, SigningKey], alg: str) -> None:
    """A token from latchkey's CompactSigner (via AccessTokenIssuer) verifies with PyJWT."""
    key = keys[alg]
    # PyJWT checks exp and iat against the wall clock, so the token is minted at "now".
    clock = ManualClock(float(int(time.time())))
    issued = AccessTokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl=600, clock=clock).issue(
        subject="user-1", sid="sid-1", scope="read write", auth_time=int(clock.now())
    )
    claims = jwt.decode(
        issued.token, key.public.key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER
    )
    assert claims["sub"] == "user-1"
    assert claims["jti"] == issued.jti
    assert claims["exp"] == issued.expires_at
    assert jwt.get_unverified_header(issued.token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pyjwt_rejects_latchkey_token_under_other_key(
    alg: str, keys: dict[str, SigningKey]
) -> None:
    """PyJWT refuses a latchkey token checked against an unrelated key of the same type."""
    clock = ManualClock(float(int(time.time())))
    token = AccessTokenIssuer(
        keys[alg], issuer=ISSUER, audience=AUDIENCE, ttl=600, clock=clock
    ).issue(subject="u", sid="s", scope="", auth_time=0)
    other = _private_key(alg).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token.token, other, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_pyjwt_tokens_verify_with_latchkey(alg: str) -> None:
    """A token PyJWT signs with the same header shape verifies with latchkey's Verifier."""
    private = _private_key(alg)
    key = SigningKey(private)
    clock = ManualClock(1_800_000_000.0)
    now = int(clock.now())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "jti": "j", "iat": now, "exp": now + 60}
    token = jwt.encode(claims, private, algorithm=alg, headers={"kid": key.kid, "typ": "at+jwt"})
    verifier = Verifier([key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(token)["sub"] == "u"
