"""The Verifier: what it accepts, and what it refuses (RFC 8725 attacks, RFC 7519/9068 claims).

Valid tokens come from :class:`AccessTokenIssuer`; hostile ones are built here by hand: header
and payload JSON base64url-encoded by the test, then signed with a trusted key, another key,
HMAC, or not at all. Every refusal is a subclass of :class:`InvalidToken`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from latchkey.core.access import AccessTokenIssuer
from latchkey.core.b64 import b64url_decode, b64url_encode
from latchkey.core.clock import ManualClock
from latchkey.core.errors import (
    BadSignature,
    ConfigurationError,
    ExpiredToken,
    ForbiddenHeader,
    ImmatureToken,
    InsufficientScope,
    InvalidClaims,
    InvalidToken,
    LatchkeyError,
    MalformedToken,
    RevokedToken,
    WrongAudience,
    WrongIssuer,
)
from latchkey.core.keys import ALGORITHMS, SigningKey, VerificationKey
from latchkey.core.verifier import MAX_TOKEN_LENGTH, Verifier, require_scopes, scopes_of

ISSUER = "https://auth.example.test"
AUDIENCE = "notes-api"
TTL = 300
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
DROP = object()  # marks a header member or claim to leave out


# --- building tokens by hand ------------------------------------------------------------------


def b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def b64text(text: str) -> str:
    return b64url_encode(text.encode("utf-8"))


def header_for(key: SigningKey, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    for name, value in changes.items():
        if value is DROP:
            header.pop(name, None)
        else:
            header[name] = value
    return header


def claims_at(now: float, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": int(now) + TTL,
        "iat": int(now),
        "jti": "jti-1",
        "client_id": "latchkey",
        "sid": "sid-1",
        "scope": "read write",
        "auth_time": int(now),
    }
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign_segments(key: SigningKey, header_segment: str, payload_segment: str) -> str:
    signing_input = f"{header_segment}.{payload_segment}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"


def make_token(
    key: SigningKey,
    clock: ManualClock,
    header: dict[str, Any] | None = None,
    **claim_changes: Any,
) -> str:
    return sign_segments(
        key, b64json(header or header_for(key)), b64json(claims_at(clock.now(), **claim_changes))
    )


def noncanonical(segment: str) -> str:
    """The same bytes to a lax decoder, but with a non-zero unused bit in the last character."""
    assert len(segment) % 4 in (2, 3)
    last = ALPHABET.index(segment[-1])
    assert last & 1 == 0  # canonical: the lowest bit is unused in both tail lengths
    return segment[:-1] + ALPHABET[last | 1]


class DictKeys:
    """A custom KeySource whose keys a test can add and remove."""

    def __init__(self, *keys: VerificationKey) -> None:
        self.keys = {key.kid: key for key in keys}

    def get(self, kid: str) -> VerificationKey | None:
        return self.keys.get(kid)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def verifier(rsa_key: SigningKey, clock: ManualClock) -> Verifier:
    return Verifier([rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture
def issuer(rsa_key: SigningKey, clock: ManualClock) -> AccessTokenIssuer:
    return AccessTokenIssuer(rsa_key, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, clock=clock)


def _issue(issuer: AccessTokenIssuer, clock: ManualClock) -> str:
    return issuer.issue(
        subject="user-1", sid="sid-1", scope="read write", auth_time=int(clock.now())
    ).token


# --- acceptance -------------------------------------------------------------------------------


def test_issued_token_is_accepted(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """A token from AccessTokenIssuer verifies and yields its RFC 9068 claims."""
    issued = issuer.issue(subject="user-1", sid="sid-1", scope="read", auth_time=123)
    claims = verifier.verify(issued.token)
    now = int(clock.now())
    assert claims == {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "exp": now + TTL,
        "iat": now,
        "jti": issued.jti,
        "client_id": "latchkey",
        "sid": "sid-1",
        "scope": "read",
        "auth_time": 123,
    }


def test_a_token_without_scopes_has_no_scope_claim(
    verifier: Verifier, issuer: AccessTokenIssuer
) -> None:
    """No empty claim: a user without scopes gets no "scope" at all (not "scope": ""), and
    such a token still verifies and has no scope."""
    claims = verifier.verify(issuer.issue(subject="u", sid="s", scope="", auth_time=1).token)
    assert "scope" not in claims
    assert scopes_of(claims) == frozenset()
    with pytest.raises(InsufficientScope):
        require_scopes(claims, ["read"])


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_algorithm_is_accepted(
    keys: dict[str, SigningKey], clock: ManualClock, alg: str
) -> None:
    """RS256, ES256 and EdDSA tokens each verify against their own key."""
    key = keys[alg]
    issuer = AccessTokenIssuer(key, issuer=ISSUER, audience=AUDIENCE, ttl=TTL, clock=clock)
    verifier = Verifier([key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(_issue(issuer, clock))["sub"] == "user-1"


def test_handcrafted_baseline_is_accepted(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """The hand-built token the negative tests start from is itself valid."""
    assert verifier.verify(make_token(rsa_key, clock))["jti"] == "jti-1"


def test_verifier_picks_the_key_the_kid_names(
    keys: dict[str, SigningKey], clock: ManualClock
) -> None:
    """With several trusted keys, each token verifies with the key its kid names."""
    verifier = Verifier(
        [key.public for key in keys.values()], issuer=ISSUER, audience=AUDIENCE, clock=clock
    )
    for key in keys.values():
        assert verifier.verify(make_token(key, clock))["sub"] == "user-1"


# --- algorithm attacks (RFC 8725 §2.1, §3.1) -----------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_with_empty_signature_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, alg: str
) -> None:
    """An unsecured JWS (alg none, empty signature) is refused."""
    token = f"{b64json(header_for(rsa_key, alg=alg))}.{b64json(claims_at(clock.now()))}."
    with pytest.raises(ForbiddenHeader):
        verifier.verify(token)


def test_alg_none_with_a_valid_signature_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """alg none is refused even when the token carries a signature by the trusted key."""
    token = make_token(rsa_key, clock, header=header_for(rsa_key, alg="none"))
    with pytest.raises(ForbiddenHeader):
        verifier.verify(token)


def _public_key_secrets(key: SigningKey) -> list[bytes]:
    public = key.public.key
    return [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(key.public.to_jwk()).encode(),
    ]


@pytest.mark.parametrize("form", range(4), ids=["pem-spki", "pem-pkcs1", "der", "jwk-json"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_with_public_key_as_secret_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, form: int, alg: str
) -> None:
    """Algorithm confusion: HS* signed with the RSA public key (PEM, DER, JWK) as HMAC secret."""
    secret = _public_key_secrets(rsa_key)[form]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64json(header_for(rsa_key, alg=alg))}.{b64json(claims_at(clock.now()))}"
    signature = hmac.new(secret, signing_input.encode("ascii"), digest).digest()
    with pytest.raises(ForbiddenHeader):
        verifier.verify(f"{signing_input}.{b64url_encode(signature)}")


@pytest.mark.parametrize(
    ("key_alg", "header_alg"),
    [
        ("RS256", "RS384"),
        ("RS256", "RS512"),
        ("RS256", "PS256"),
        ("RS256", "ES256"),
        ("RS256", "EdDSA"),
        ("RS256", "rs256"),
        ("ES256", "ES384"),
        ("ES256", "ES512"),
        ("ES256", "RS256"),
        ("ES256", "ES256K"),
        ("EdDSA", "Ed25519"),
        ("EdDSA", "ES256"),
        ("EdDSA", "eddsa"),
    ],
)
def test_alg_that_differs_from_the_keys_pinned_alg_is_refused(
    keys: dict[str, SigningKey], clock: ManualClock, key_alg: str, header_alg: str
) -> None:
    """A header alg other than the key's pinned one is refused, though the signature is right."""
    key = keys[key_alg]
    verifier = Verifier([key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(key, clock, header=header_for(key, alg=header_alg)))


@pytest.mark.parametrize("alg", [DROP, None, 256, ["RS256"]])
def test_missing_or_non_string_alg_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, alg: object
) -> None:
    """A header without alg, or with a non-string alg, is refused."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, alg=alg)))


# --- kid ----------------------------------------------------------------------------------------


def test_unknown_kid_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A kid that names no trusted key is refused."""
    header = header_for(rsa_key, kid="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header))


def test_kid_of_an_untrusted_key_is_refused(
    verifier: Verifier, other_rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A token signed by another key under that key's own kid is refused."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(other_rsa_key, clock))


@pytest.mark.parametrize("kid", [DROP, None, 1, ["kid"], {"kid": "x"}])
def test_missing_or_non_string_kid_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, kid: object
) -> None:
    """A header without kid, or with a non-string kid, is refused."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, kid=kid)))


@pytest.mark.parametrize(
    "kid",
    [
        "../../dev/null",
        "/dev/null",
        "' OR 1=1",
        "' OR 1=1 --",
        "x' UNION SELECT 'secret",
        "|cat /etc/passwd",
        "",
        "\x00",
        "http://attacker.example/key",
    ],
)
def test_kid_injection_strings_are_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, kid: str
) -> None:
    """kid is only a lookup key: path, SQL and URL injection strings name no key."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, kid=kid)))


def test_kid_with_suffix_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """The trusted kid with a NUL, a space or a path suffix is a different, unknown kid."""
    for kid in (rsa_key.kid + "\x00", rsa_key.kid + " ", rsa_key.kid + "/../x"):
        with pytest.raises(ForbiddenHeader):
            verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, kid=kid)))


# --- header members (RFC 8725 §3.10, RFC 7515 §4.1.11) ------------------------------------


def _embedded_header_values(key: SigningKey) -> dict[str, Any]:
    return {
        "jwk": key.public.to_jwk(),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": ["MIIBszCCAVmgAwIBAgIUAA=="],
        "x5t": "dGh1bWJwcmludA",
        "x5t#S256": "dGh1bWJwcmludA",
        "crit": ["exp"],
        "b64": False,
        "cty": "JWT",
        "zip": "DEF",
        "enc": "A256GCM",
        "nonce": "n",
    }


EXTRA_HEADER_MEMBERS = [
    "jwk",
    "jku",
    "x5u",
    "x5c",
    "x5t",
    "x5t#S256",
    "crit",
    "b64",
    "cty",
    "zip",
    "enc",
    "nonce",
]


@pytest.mark.parametrize("member", EXTRA_HEADER_MEMBERS)
def test_embedded_key_and_extra_header_members_are_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, member: str
) -> None:
    """jwk, jku, x5u, x5c, crit and any member but alg/kid/typ make the header unacceptable."""
    value = _embedded_header_values(rsa_key)[member]
    token = make_token(rsa_key, clock, header={**header_for(rsa_key), member: value})
    with pytest.raises(ForbiddenHeader):
        verifier.verify(token)


def test_embedded_jwk_of_an_attacker_key_is_refused(
    verifier: Verifier, other_rsa_key: SigningKey, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A token signed by an attacker who embeds their own JWK under the trusted kid is refused."""
    header = {**header_for(rsa_key), "jwk": other_rsa_key.public.to_jwk()}
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(other_rsa_key, clock, header=header))


@pytest.mark.parametrize(
    "typ",
    ["JWT", "jwt", "application/jwt", "at+jwt ", " at+jwt", "at+jwt+x", "", "at jwt", 1, None],
)
def test_wrong_typ_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, typ: object
) -> None:
    """typ must be at+jwt (RFC 9068 §4, RFC 8725 §3.11): JWT and the like are refused."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, typ=typ)))


def test_missing_typ_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A header without typ is refused."""
    with pytest.raises(ForbiddenHeader):
        verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, typ=DROP)))


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "Application/At+JWT"])
def test_at_jwt_typ_forms_are_accepted(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, typ: str
) -> None:
    """typ at+jwt and application/at+jwt are accepted, case-insensitively (RFC 7515 §4.1.9)."""
    assert verifier.verify(make_token(rsa_key, clock, header=header_for(rsa_key, typ=typ)))


def test_header_member_order_does_not_matter(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A header with the same members in another order is accepted."""
    header = {"typ": "at+jwt", "kid": rsa_key.kid, "alg": rsa_key.alg}
    assert verifier.verify(make_token(rsa_key, clock, header=header))


# --- claims -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iss", [DROP, None, "https://evil.example", ISSUER + "/", ISSUER.upper(), [ISSUER], 1]
)
def test_wrong_issuer_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, iss: object
) -> None:
    """iss must equal the configured issuer exactly; the class says which check failed."""
    with pytest.raises(WrongIssuer):
        verifier.verify(make_token(rsa_key, clock, iss=iss))


@pytest.mark.parametrize(
    "aud",
    [DROP, None, "other-api", AUDIENCE + " ", AUDIENCE.upper(), ["other-api"], [], {"a": AUDIENCE}],
)
def test_wrong_audience_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, aud: object
) -> None:
    """aud must be the configured audience or a list holding it."""
    with pytest.raises(WrongAudience):
        verifier.verify(make_token(rsa_key, clock, aud=aud))


@pytest.mark.parametrize("aud", [[AUDIENCE], ["other-api", AUDIENCE], [AUDIENCE, "other-api"]])
def test_audience_list_containing_the_audience_is_accepted(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, aud: list[str]
) -> None:
    """An aud list that contains the audience is accepted (RFC 7519 §4.1.3)."""
    assert verifier.verify(make_token(rsa_key, clock, aud=aud))["aud"] == aud


def test_expired_token_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """A token is valid until just before exp and expired from exp on (RFC 7519 §4.1.4)."""
    token = _issue(issuer, clock)
    clock.advance(TTL - 1)
    assert verifier.verify(token)
    clock.advance(0.999)
    assert verifier.verify(token)
    clock.advance(0.001)  # now == exp exactly
    with pytest.raises(ExpiredToken):
        verifier.verify(token)
    clock.advance(3600)
    with pytest.raises(ExpiredToken):
        verifier.verify(token)


def test_token_exactly_at_exp_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """With the clock set to exp itself, the token is already expired."""
    token = make_token(rsa_key, clock)
    clock.set(claims_at(clock.now())["exp"])
    with pytest.raises(ExpiredToken):
        verifier.verify(token)


def test_leeway_is_honoured_for_exp(rsa_key: SigningKey, clock: ManualClock) -> None:
    """With leeway 30, a token is accepted until 30 s after exp, and refused from then on."""
    verifier = Verifier([rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, leeway=30)
    token = make_token(rsa_key, clock)
    exp = claims_at(clock.now())["exp"]
    clock.set(exp)
    assert verifier.verify(token)
    clock.set(exp + 29.999)
    assert verifier.verify(token)
    clock.set(exp + 30)
    with pytest.raises(ExpiredToken):
        verifier.verify(token)


def test_leeway_is_honoured_for_iat_and_nbf(rsa_key: SigningKey, clock: ManualClock) -> None:
    """With leeway 30, iat and nbf up to 30 s ahead are accepted, and 31 s ahead refused."""
    verifier = Verifier([rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, leeway=30)
    now = int(clock.now())
    assert verifier.verify(make_token(rsa_key, clock, iat=now + 30))
    assert verifier.verify(make_token(rsa_key, clock, nbf=now + 30))
    with pytest.raises(ImmatureToken):
        verifier.verify(make_token(rsa_key, clock, iat=now + 31))
    with pytest.raises(ImmatureToken):
        verifier.verify(make_token(rsa_key, clock, nbf=now + 31))


def test_default_leeway_is_zero(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """Without leeway, one second past exp or one second of iat ahead is refused."""
    now = int(clock.now())
    with pytest.raises(ExpiredToken):
        verifier.verify(make_token(rsa_key, clock, iat=now - 10, exp=now - 1))
    with pytest.raises(ImmatureToken):
        verifier.verify(make_token(rsa_key, clock, iat=now + 1))


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_missing_exp_or_iat_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, claim: str
) -> None:
    """exp and iat are required (RFC 9068 §2.2)."""
    with pytest.raises(InvalidClaims):
        verifier.verify(make_token(rsa_key, clock, **{claim: DROP}))


@pytest.mark.parametrize(
    "value", ["9999999999", "1800000300", True, False, None, [9999999999], {"v": 1}]
)
@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_non_numeric_exp_or_iat_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, claim: str, value: object
) -> None:
    """NumericDate is a JSON number: strings such as "9999999999" and booleans are refused."""
    with pytest.raises(InvalidClaims) as caught:
        verifier.verify(make_token(rsa_key, clock, **{claim: value}))
    assert type(caught.value) is InvalidClaims  # not mistaken for an expiry


def test_fractional_numeric_dates_are_accepted(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """NumericDate may be non-integer (RFC 7519 §2)."""
    now = clock.now()
    assert verifier.verify(make_token(rsa_key, clock, iat=now - 0.5, exp=now + 60.5))


def test_nbf_in_future_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A token is refused before nbf and accepted from nbf on (RFC 7519 §4.1.5)."""
    now = int(clock.now())
    token = make_token(rsa_key, clock, nbf=now + 10)
    with pytest.raises(ImmatureToken):
        verifier.verify(token)
    clock.advance(9.999)
    with pytest.raises(ImmatureToken):
        verifier.verify(token)
    clock.advance(0.001)
    assert verifier.verify(token)["nbf"] == now + 10


@pytest.mark.parametrize("nbf", ["0", True, None])
def test_non_numeric_nbf_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, nbf: object
) -> None:
    """A present nbf must be a number."""
    with pytest.raises(InvalidClaims):
        verifier.verify(make_token(rsa_key, clock, nbf=nbf))


def test_iat_in_future_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A token issued in the future is refused; once the clock reaches iat it is accepted."""
    now = int(clock.now())
    token = make_token(rsa_key, clock, iat=now + 5, exp=now + 60)
    with pytest.raises(ImmatureToken):
        verifier.verify(token)
    clock.advance(5)
    assert verifier.verify(token)


def test_lifetime_longer_than_max_lifetime_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """exp - iat may be at most max_lifetime (3600 s by default), however the two are placed."""
    now = int(clock.now())
    assert verifier.verify(make_token(rsa_key, clock, iat=now, exp=now + 3600))
    with pytest.raises(InvalidClaims):
        verifier.verify(make_token(rsa_key, clock, iat=now, exp=now + 3601))
    with pytest.raises(InvalidClaims):  # backdated iat, exp still near
        verifier.verify(make_token(rsa_key, clock, iat=now - 7200, exp=now + 60))
    with pytest.raises(InvalidClaims):
        verifier.verify(make_token(rsa_key, clock, iat=now, exp=9_999_999_999))


def test_max_lifetime_is_configurable(rsa_key: SigningKey, clock: ManualClock) -> None:
    """max_lifetime=60 refuses a 61 s token; max_lifetime=None accepts a long one."""
    now = int(clock.now())
    long_token = make_token(rsa_key, clock, iat=now, exp=now + 86_400)
    strict = Verifier(
        [rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, max_lifetime=60
    )
    with pytest.raises(InvalidClaims):
        strict.verify(make_token(rsa_key, clock, iat=now, exp=now + 61))
    lax = Verifier(
        [rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, max_lifetime=None
    )
    assert lax.verify(long_token)


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", DROP),
        ("sub", ""),
        ("sub", None),
        ("sub", 42),
        ("sub", ["user-1"]),
        ("jti", DROP),
        ("jti", None),
        ("jti", 7),
        ("sid", 1),
        ("sid", None),
        ("scope", ["read"]),
        ("client_id", 3),
    ],
)
def test_missing_or_mistyped_required_claims_are_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, claim: str, value: object
) -> None:
    """sub (non-empty) and jti are required strings; sid, scope, client_id must be strings."""
    with pytest.raises(InvalidClaims):
        verifier.verify(make_token(rsa_key, clock, **{claim: value}))


def test_optional_claims_may_be_absent(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A token without sid, scope, client_id and auth_time is accepted."""
    token = make_token(rsa_key, clock, sid=DROP, scope=DROP, client_id=DROP, auth_time=DROP)
    assert verifier.verify(token)["sub"] == "user-1"


# --- signature ----------------------------------------------------------------------------------


def test_tampered_payload_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """Changing one claim and keeping the original signature fails the signature check."""
    header, payload, signature = _issue(issuer, clock).split(".")
    claims = json.loads(b64url_decode(payload))
    for name, value in (("sub", "admin"), ("scope", "read write admin"), ("exp", 9_999_999_999)):
        forged = f"{header}.{b64json({**claims, name: value})}.{signature}"
        with pytest.raises(BadSignature):
            verifier.verify(forged)


def test_tampered_signature_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """Flipping one bit of the signature fails the signature check."""
    header, payload, signature = _issue(issuer, clock).split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0x01
    with pytest.raises(BadSignature):
        verifier.verify(f"{header}.{payload}.{b64url_encode(bytes(raw))}")


def test_empty_signature_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """The right header and payload with the signature stripped are refused."""
    header, payload, _ = _issue(issuer, clock).split(".")
    with pytest.raises(BadSignature):
        verifier.verify(f"{header}.{payload}.")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_signature_from_another_key_with_the_same_kid_is_refused(
    keys: dict[str, SigningKey], clock: ManualClock, alg: str
) -> None:
    """A token signed by another key of the same type under the trusted kid is refused."""
    trusted = keys[alg]
    attacker = SigningKey.generate(alg)  # type: ignore[arg-type]
    verifier = Verifier([trusted.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)
    with pytest.raises(BadSignature):
        verifier.verify(make_token(attacker, clock, header=header_for(trusted)))


def test_signature_over_another_header_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """Swapping in another acceptable header keeps the signature from verifying."""
    token = make_token(rsa_key, clock)
    _, payload, signature = token.split(".")
    other_header = b64json(header_for(rsa_key, typ="application/at+jwt"))
    with pytest.raises(BadSignature):
        verifier.verify(f"{other_header}.{payload}.{signature}")


# --- shape: segments, base64url, size ------------------------------------------------------


@pytest.mark.parametrize("segment", [0, 1, 2])
@pytest.mark.parametrize("padding", ["=", "==", "==="])
def test_padded_segment_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, segment: int, padding: str
) -> None:
    """'=' appended to header, payload or signature is refused, even when signed as such."""
    parts = make_token(rsa_key, clock).split(".")
    parts[segment] += padding
    if segment < 2:  # re-sign, so that only the padding is wrong
        parts = sign_segments(rsa_key, parts[0], parts[1]).split(".")
    with pytest.raises(MalformedToken):
        verifier.verify(".".join(parts))


def _header_segment_with_tail(key: SigningKey) -> str:
    """A valid header segment whose length is not a multiple of 4 (so it has unused bits)."""
    text = json.dumps(header_for(key), separators=(",", ":"))
    if len(text.encode()) % 3 == 0:
        text = text.replace('"at+jwt"', '"\\u0061t+jwt"')  # same JSON value, 5 more octets
    assert len(text.encode()) % 3 != 0
    return b64text(text)


def _payload_segment_with_tail(clock: ManualClock) -> str:
    claims = claims_at(clock.now())
    for extra in ("", "x", "xx"):
        text = json.dumps({**claims, "pad": extra}, separators=(",", ":"))
        if len(text) % 3:
            return b64text(text)
    raise AssertionError("unreachable")


def test_non_canonical_trailing_bits_are_refused_in_every_segment(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """Each segment has one encoding: a lax-equivalent last character is refused."""
    header = _header_segment_with_tail(rsa_key)
    payload = _payload_segment_with_tail(clock)
    token = sign_segments(rsa_key, header, payload)
    assert verifier.verify(token)  # the canonical form is fine
    signature = token.split(".")[2]
    assert len(signature) % 4 in (2, 3)  # 256-octet RSA signature
    variants = [
        sign_segments(rsa_key, noncanonical(header), payload),
        sign_segments(rsa_key, header, noncanonical(payload)),
        f"{header}.{payload}.{noncanonical(signature)}",
    ]
    for variant in variants:
        with pytest.raises(MalformedToken):
            verifier.verify(variant)


@pytest.mark.parametrize("char", ["+", "/", " ", "\n", "*"])
def test_non_base64url_characters_are_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, char: str
) -> None:
    """A character outside the base64url alphabet in the signature segment is refused."""
    header, payload, signature = make_token(rsa_key, clock).split(".")
    with pytest.raises(MalformedToken):
        verifier.verify(f"{header}.{payload}.{signature[:10]}{char}{signature[11:]}")


@pytest.mark.parametrize("count", [1, 2, 4, 5])
def test_wrong_number_of_segments_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, count: int
) -> None:
    """Only three segments (a compact JWS) are accepted; 1, 2, 4 or 5 (JWE) are refused."""
    parts = make_token(rsa_key, clock).split(".")
    parts = (parts * 2)[:count]
    with pytest.raises(MalformedToken):
        verifier.verify(".".join(parts))


@pytest.mark.parametrize("token", ["", ".", "..", "...", "a.b.c"])
def test_empty_and_tiny_tokens_are_refused(verifier: Verifier, token: str) -> None:
    """Empty segments and junk are malformed."""
    with pytest.raises(MalformedToken):
        verifier.verify(token)


def test_oversized_token_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A validly signed token of up to 8192 characters is accepted; one longer is refused."""
    header = b64json(header_for(rsa_key))
    signature_length = len(make_token(rsa_key, clock).split(".")[2])

    def length(size: int) -> int:
        payload = b64json(claims_at(clock.now(), filler="a" * size))
        return len(header) + len(payload) + signature_length + 2

    size = max(n for n in range(5000, 7000) if length(n) <= MAX_TOKEN_LENGTH)
    longest_ok = make_token(rsa_key, clock, filler="a" * size)
    too_long = make_token(rsa_key, clock, filler="a" * (size + 1))
    assert MAX_TOKEN_LENGTH - 4 < len(longest_ok) <= MAX_TOKEN_LENGTH < len(too_long)
    assert verifier.verify(longest_ok)["filler"] == "a" * size  # type: ignore[typeddict-item]
    with pytest.raises(MalformedToken):
        verifier.verify(too_long)
    with pytest.raises(MalformedToken):
        verifier.verify("a" * (10 * MAX_TOKEN_LENGTH))


@pytest.mark.parametrize("token", [b"a.b.c", bytearray(b"a.b.c"), None, 123, ["a", "b", "c"]])
def test_non_str_token_is_refused(verifier: Verifier, token: object) -> None:
    """Only str is accepted: bytes, None and other types are malformed."""
    with pytest.raises(MalformedToken):
        verifier.verify(token)  # type: ignore[arg-type]


def test_valid_token_as_bytes_or_str_subclass_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """A valid token passed as bytes, or as a str subclass, is refused."""

    class Token(str):
        pass

    token = _issue(issuer, clock)
    with pytest.raises(MalformedToken):
        verifier.verify(token.encode())  # type: ignore[arg-type]
    with pytest.raises(MalformedToken):
        verifier.verify(Token(token))
    assert verifier.verify(token)


def test_non_ascii_token_is_refused(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """A token with a non-ASCII character is malformed."""
    with pytest.raises(MalformedToken):
        verifier.verify(_issue(issuer, clock) + "é")
    with pytest.raises(MalformedToken):
        verifier.verify("é" + _issue(issuer, clock))


# --- JSON ---------------------------------------------------------------------------------------


def _signed_payload_text(key: SigningKey, text: str) -> str:
    return sign_segments(key, b64json(header_for(key)), b64text(text))


def _claims_text(clock: ManualClock, **changes: Any) -> str:
    return json.dumps(claims_at(clock.now(), **changes), separators=(",", ":"))


def test_duplicate_exp_in_payload_cannot_extend_a_token(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """With "exp" twice, the lexically last one rules (RFC 7519 §4): a past one refuses."""
    now = int(clock.now())
    text = _claims_text(clock)[:-1] + f',"exp":{now - 1}}}'
    assert text.count('"exp"') == 2
    with pytest.raises(ExpiredToken):
        verifier.verify(_signed_payload_text(rsa_key, text))


def test_duplicate_exp_in_payload_uses_the_last_member(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """With "exp" twice, the claims returned hold the last value, the one that was checked."""
    now = int(clock.now())
    text = _claims_text(clock, exp=now - 100)[:-1] + f',"exp":{now + 60}}}'
    assert verifier.verify(_signed_payload_text(rsa_key, text))["exp"] == now + 60


@pytest.mark.parametrize("member", ['"alg":"RS256"', '"typ":"at+jwt"', '"kid":"x"'])
def test_duplicate_member_in_header_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, member: str
) -> None:
    """A header with a member twice is refused (RFC 7515 §5.2), whatever the two values."""
    text = json.dumps(header_for(rsa_key), separators=(",", ":"))[:-1] + "," + member + "}"
    token = sign_segments(rsa_key, b64text(text), b64json(claims_at(clock.now())))
    with pytest.raises(MalformedToken):
        verifier.verify(token)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "extra"])
def test_nan_and_infinity_in_payload_are_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, constant: str, claim: str
) -> None:
    """NaN, Infinity and overflowing numbers are not JSON (RFC 8259 §6) and are refused."""
    text = _claims_text(clock, **{claim: DROP})[:-1] + f',"{claim}":{constant}}}'
    with pytest.raises(MalformedToken):
        verifier.verify(_signed_payload_text(rsa_key, text))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_header_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, constant: str
) -> None:
    """NaN and Infinity in the header are refused before any key lookup."""
    text = json.dumps(header_for(rsa_key), separators=(",", ":"))[:-1] + f',"x":{constant}}}'
    token = sign_segments(rsa_key, b64text(text), b64json(claims_at(clock.now())))
    with pytest.raises(MalformedToken):
        verifier.verify(token)


@pytest.mark.parametrize(
    "text", ["[]", '["iss","sub"]', '"claims"', "42", "null", "true", "", "{", '{"iss":}']
)
def test_payload_that_is_not_a_json_object_is_refused(
    verifier: Verifier, rsa_key: SigningKey, text: str
) -> None:
    """A signed payload that is an array, a scalar or not JSON at all is malformed."""
    with pytest.raises(MalformedToken):
        verifier.verify(_signed_payload_text(rsa_key, text))


def test_payload_claims_array_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """The valid claims wrapped in a JSON array are refused."""
    text = "[" + _claims_text(clock) + "]"
    with pytest.raises(MalformedToken):
        verifier.verify(_signed_payload_text(rsa_key, text))


def test_payload_with_invalid_utf8_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A payload that is not UTF-8 is malformed."""
    raw = _claims_text(clock).encode()[:-1] + b',"x":"\xff\xfe"}'
    token = sign_segments(rsa_key, b64json(header_for(rsa_key)), b64url_encode(raw))
    with pytest.raises(MalformedToken):
        verifier.verify(token)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '"at+jwt"',
        "null",
        "",
        "{",
        ' {"alg":"RS256"}',
        '{"alg":"RS256"} ',
        '{"alg":"RS256"}{}',
    ],
)
def test_header_that_is_not_one_json_object_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock, text: str
) -> None:
    """A header that is not exactly one JSON object, without surrounding whitespace, is
    malformed."""
    token = sign_segments(rsa_key, b64text(text), b64json(claims_at(clock.now())))
    with pytest.raises(MalformedToken):
        verifier.verify(token)


def test_deeply_nested_header_is_refused(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A header nested deep enough to exhaust recursion is malformed, not a crash."""
    text = '{"x":' + "[" * 5000 + "]" * 5000 + "}"
    token = sign_segments(rsa_key, b64text(text), b64json(claims_at(clock.now())))
    with pytest.raises(MalformedToken):
        verifier.verify(token)


# --- revocation -------------------------------------------------------------------------------


def test_revoked_session_is_refused(rsa_key: SigningKey, clock: ManualClock) -> None:
    """A token whose sid is in revoked_sessions raises RevokedToken; other sids pass."""
    revoked = {"sid-revoked"}
    verifier = Verifier(
        [rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, revoked_sessions=revoked
    )
    with pytest.raises(RevokedToken):
        verifier.verify(make_token(rsa_key, clock, sid="sid-revoked"))
    assert verifier.verify(make_token(rsa_key, clock, sid="sid-live"))
    assert verifier.verify(make_token(rsa_key, clock, sid=DROP))
    revoked.add("sid-live")  # the deny-list is read on every call
    with pytest.raises(RevokedToken):
        verifier.verify(make_token(rsa_key, clock, sid="sid-live"))


def test_revocation_is_checked_only_for_genuine_tokens(
    rsa_key: SigningKey, other_rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A forged token naming a revoked sid fails on its signature, not as revoked."""
    verifier = Verifier(
        [rsa_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock, revoked_sessions={"s"}
    )
    forged = make_token(other_rsa_key, clock, header=header_for(rsa_key), sid="s")
    with pytest.raises(BadSignature):
        verifier.verify(forged)


# --- header cache -------------------------------------------------------------------------------


def test_header_cache_does_not_let_a_different_header_through(
    verifier: Verifier, rsa_key: SigningKey, clock: ManualClock
) -> None:
    """After a good header is cached, a token with another, bad header is still refused."""
    good = make_token(rsa_key, clock)
    assert verifier.verify(good)
    assert verifier.verify(good)  # served from the cache
    bad_headers = [
        {**header_for(rsa_key), "jku": "https://attacker.example/jwks"},
        header_for(rsa_key, typ="JWT"),
        header_for(rsa_key, alg="RS512"),
        header_for(rsa_key, kid=DROP),
    ]
    for header in bad_headers:
        with pytest.raises(ForbiddenHeader):
            verifier.verify(make_token(rsa_key, clock, header=header))
    assert verifier.verify(good)


def test_cached_header_still_checks_signature_and_claims(
    verifier: Verifier, rsa_key: SigningKey, other_rsa_key: SigningKey, clock: ManualClock
) -> None:
    """A cached header skips no check: bad signatures and expired claims are still refused."""
    assert verifier.verify(make_token(rsa_key, clock))
    with pytest.raises(BadSignature):
        verifier.verify(make_token(other_rsa_key, clock, header=header_for(rsa_key)))
    now = int(clock.now())
    with pytest.raises(ExpiredToken):
        verifier.verify(make_token(rsa_key, clock, iat=now - 100, exp=now - 1))


def test_key_removed_from_key_source_fails_cached_header(
    rsa_key: SigningKey, clock: ManualClock
) -> None:
    """Once its key leaves a custom KeySource, a token whose header was cached is refused."""
    source = DictKeys(rsa_key.public)
    verifier = Verifier(source, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    token = make_token(rsa_key, clock)
    assert verifier.verify(token)
    del source.keys[rsa_key.kid]
    with pytest.raises(ForbiddenHeader):
        verifier.verify(token)
    source.keys[rsa_key.kid] = rsa_key.public
    assert verifier.verify(token)


def test_cached_header_rechecks_alg_when_the_key_under_a_kid_changes(
    keys: dict[str, SigningKey], clock: ManualClock
) -> None:
    """If a KeySource re-maps a kid to a key of another algorithm, a cached header whose alg
    no longer fits is refused, as it is by a Verifier that never saw it."""
    rsa, es = keys["RS256"], keys["ES256"]
    source = DictKeys(VerificationKey.from_public_key(rsa.public.key, kid="shared"))
    verifier = Verifier(source, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    header = {"alg": "RS256", "kid": "shared", "typ": "at+jwt"}
    assert verifier.verify(make_token(rsa, clock, header=header))  # header now cached
    source.keys["shared"] = VerificationKey.from_public_key(es.public.key, kid="shared")
    mismatched = make_token(es, clock, header=header)  # says RS256, signed with ES256
    fresh = Verifier(source, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    with pytest.raises(ForbiddenHeader):
        fresh.verify(mismatched)
    with pytest.raises(ForbiddenHeader):
        verifier.verify(mismatched)


def test_header_cache_overflow_keeps_verifying(
    keys: dict[str, SigningKey], clock: ManualClock
) -> None:
    """More distinct headers than the cache holds all verify, and the first still does."""
    key = keys["EdDSA"]
    verifier = Verifier([key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)
    base = "application/at+jwt"
    tokens = []
    for bits in range(100):  # 100 case variants of the typ, each a different header segment
        typ = "".join(c.upper() if bits >> i & 1 else c for i, c in enumerate(base))
        tokens.append(make_token(key, clock, header=header_for(key, typ=typ)))
    assert len({token.split(".")[0] for token in tokens}) == 100
    for token in tokens:
        assert verifier.verify(token)
    assert verifier.verify(tokens[0])


# --- scopes -----------------------------------------------------------------------------------


def test_scopes_of_splits_the_scope_claim() -> None:
    """scope is a space-delimited string; anything else means no scopes."""
    assert scopes_of({"scope": "read write"}) == {"read", "write"}
    assert scopes_of({"scope": "  read   write "}) == {"read", "write"}
    assert scopes_of({"scope": ""}) == frozenset()
    assert scopes_of({}) == frozenset()
    assert scopes_of({"scope": ["read", "write"]}) == frozenset()
    assert isinstance(scopes_of({"scope": "a"}), frozenset)


def test_require_scopes_accepts_a_subset() -> None:
    """require_scopes returns quietly when every required scope is present."""
    claims = {"scope": "read write"}
    require_scopes(claims, ["read"])
    require_scopes(claims, {"read", "write"})
    require_scopes(claims, [])


@pytest.mark.parametrize(
    ("scope", "required"),
    [("read", ["write"]), ("read", ["read", "write"]), ("", ["read"]), ("readwrite", ["read"])],
)
def test_require_scopes_raises_insufficient_scope(scope: str, required: list[str]) -> None:
    """A missing scope raises InsufficientScope: 403, insufficient_scope, not InvalidToken."""
    with pytest.raises(InsufficientScope) as caught:
        require_scopes({"scope": scope}, required)
    assert caught.value.status_code == 403
    assert caught.value.error == "insufficient_scope"
    assert not isinstance(caught.value, InvalidToken)


def test_require_scopes_on_verified_claims(
    verifier: Verifier, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """The scopes of a verified token are those the issuer granted."""
    claims = verifier.verify(_issue(issuer, clock))
    assert scopes_of(claims) == {"read", "write"}
    with pytest.raises(InsufficientScope):
        require_scopes(claims, ["admin"])


# --- key sets -----------------------------------------------------------------------------------


def test_verifier_accepts_a_jwks_dict(
    keys: dict[str, SigningKey], issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """Verifier(jwks_dict, ...) trusts the keys of a JWKS document."""
    jwks = {"keys": [key.public.to_jwk() for key in keys.values()]}
    verifier = Verifier(jwks, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(_issue(issuer, clock))["sub"] == "user-1"
    assert Verifier.from_jwks(jwks, issuer=ISSUER, audience=AUDIENCE, clock=clock).verify(
        make_token(keys["EdDSA"], clock)
    )


def test_jwks_skips_keys_it_cannot_use(
    rsa_key: SigningKey, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """oct keys and encryption keys in a JWKS are skipped; the usable key still works."""
    jwks = {
        "keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {**rsa_key.public.to_jwk(), "use": "enc", "kid": "enc"},
            rsa_key.public.to_jwk(),
        ]
    }
    verifier = Verifier(jwks, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(_issue(issuer, clock))


@pytest.mark.parametrize(
    "jwks", [{}, {"keys": []}, {"keys": {}}, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}]
)
def test_jwks_without_usable_key_is_refused(jwks: dict[str, Any]) -> None:
    """A JWKS with no usable signature key is a configuration error."""
    with pytest.raises(ConfigurationError):
        Verifier(jwks, issuer=ISSUER, audience=AUDIENCE)


def test_verifier_from_jwks_file(
    tmp_path: Path, rsa_key: SigningKey, issuer: AccessTokenIssuer, clock: ManualClock
) -> None:
    """Verifier.from_jwks_file reads a JWKS document from disk."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_key.public.to_jwk()]}), encoding="utf-8")
    verifier = Verifier.from_jwks_file(path, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    assert verifier.verify(_issue(issuer, clock))["sub"] == "user-1"
    assert Verifier.from_jwks_file(str(path), issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.mark.parametrize("content", [None, "not json", "[]", '{"keys": 1}'])
def test_from_jwks_file_refuses_bad_files(tmp_path: Path, content: str | None) -> None:
    """A missing file, invalid JSON or a non-JWKS document is a configuration error."""
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError):
        Verifier.from_jwks_file(path, issuer=ISSUER, audience=AUDIENCE)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        MalformedToken,
        ForbiddenHeader,
        BadSignature,
        InvalidClaims,
        ExpiredToken,
        ImmatureToken,
        RevokedToken,
    ],
)
def test_every_refusal_is_an_invalid_token(error: type[LatchkeyError]) -> None:
    """Every refusal class is an InvalidToken with the same 401 invalid_token body."""
    assert issubclass(error, InvalidToken)
    instance = error()
    assert instance.status_code == 401
    assert instance.error == "invalid_token"
    assert instance.description == InvalidToken.description
