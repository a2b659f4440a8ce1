"""Access tokens of a real ``latchkey serve`` verified by JOSE libraries nobody here wrote.

Each library gets only the service's JWKS URL (``/.well-known/jwks.json``), the issuer and the
audience, as a third-party resource server would: PyJWT's ``PyJWKClient``, joserfc with a
key set fetched over HTTP, and Node.js ``jose`` with ``createRemoteJWKSet``. Every test runs
once per signing algorithm latchkey offers (RS256, ES256, EdDSA: one server each).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from interop_support import assert_matches_me, header_of, joserfc_decode, pyjwt_decode, tampered
from joserfc.errors import BadSignatureError, InvalidClaimError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(latchkey_server) -> dict[str, Any]:
    """A token pair from a login over HTTP."""
    return latchkey_server.login()


@pytest.fixture(scope="module")
def me(latchkey_server, pair) -> dict[str, Any]:
    """What the server says about the token's user and session (GET /auth/me)."""
    return latchkey_server.me(pair["access_token"])


def test_jwks_publishes_the_signing_key(latchkey_server, pair) -> None:
    header = header_of(pair["access_token"])
    assert header["typ"] == "at+jwt"
    assert header["alg"] == latchkey_server.alg
    jwks = latchkey_server.jwks()
    [jwk] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    assert jwk["alg"] == latchkey_server.alg
    assert jwk["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()  # public members only


# --- PyJWT -----------------------------------------------------------------------------------


def test_pyjwt_verifies_access_token(latchkey_server, pair, me) -> None:
    client = jwt.PyJWKClient(latchkey_server.jwks_url)
    token = pair["access_token"]
    key = client.get_signing_key_from_jwt(token)
    assert key.key_id == header_of(token)["kid"]
    assert key.algorithm_name == latchkey_server.alg
    claims = pyjwt_decode(
        client, token, audience=latchkey_server.audience, issuer=latchkey_server.issuer
    )
    assert_matches_me(claims, me)
    assert claims["iss"] == latchkey_server.issuer
    assert claims["aud"] == latchkey_server.audience
    assert claims["iat"] <= time.time() < claims["exp"]


def test_pyjwt_rejects_tampered_token(latchkey_server, pair) -> None:
    client = jwt.PyJWKClient(latchkey_server.jwks_url)
    forged = tampered(pair["access_token"], scope="read write admin")
    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_decode(
            client, forged, audience=latchkey_server.audience, issuer=latchkey_server.issuer
        )


def test_pyjwt_rejects_wrong_audience_and_issuer(latchkey_server, pair) -> None:
    client = jwt.PyJWKClient(latchkey_server.jwks_url)
    token = pair["access_token"]
    with pytest.raises(jwt.InvalidAudienceError):
        pyjwt_decode(client, token, audience="someone-else", issuer=latchkey_server.issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        pyjwt_decode(client, token, audience=latchkey_server.audience, issuer="http://127.0.0.1:1")


# --- joserfc ---------------------------------------------------------------------------------


def test_joserfc_verifies_access_token(latchkey_server, pair, me) -> None:
    token = joserfc_decode(latchkey_server, pair["access_token"])
    assert token.header["typ"] == "at+jwt"
    assert token.header["alg"] == latchkey_server.alg
    assert token.header["kid"] == header_of(pair["access_token"])["kid"]
    assert_matches_me(token.claims, me)


def test_joserfc_rejects_tampered_token(latchkey_server, pair) -> None:
    forged = tampered(pair["access_token"], sub="someone-else")
    with pytest.raises(BadSignatureError):
        joserfc_decode(latchkey_server, forged)


def test_joserfc_rejects_wrong_audience(latchkey_server, pair) -> None:
    with pytest.raises(InvalidClaimError, match="aud"):
        joserfc_decode(latchkey_server, pair["access_token"], audience="someone-else")


# --- Node.js jose ----------------------------------------------------------------------------


def test_node_jose_verifies_access_token(latchkey_server, pair, me, node_verifier) -> None:
    [payload] = node_verifier.verify(latchkey_server, pair["access_token"])
    assert_matches_me(payload, me)
    assert payload["iss"] == latchkey_server.issuer
    assert payload["aud"] == latchkey_server.audience


def test_node_jose_rejects_tampered_token(latchkey_server, pair, node_verifier) -> None:
    forged = tampered(pair["access_token"], scope="read write admin")
    result = node_verifier.run(latchkey_server, forged)
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("ERR_JWS_SIGNATURE_VERIFICATION_FAILED"), result.stderr


def test_node_jose_rejects_wrong_audience(latchkey_server, pair, node_verifier) -> None:
    result = node_verifier.run(latchkey_server, pair["access_token"], audience="someone-else")
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert result.stderr.startswith("ERR_JWT_CLAIM_VALIDATION_FAILED"), result.stderr
    assert '"aud"' in result.stderr, result.stderr
