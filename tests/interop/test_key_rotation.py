"""Key rotation seen by third-party verifiers: ``latchkey keys rotate --immediately`` on a
running server; tokens of the old and of the new key both verify through the JWKS URL.

The server reloads its keys every LATCHKEY_KEY_REFRESH_INTERVAL (1 s here), so it signs with
the new key shortly after the command, without a restart; the old key stays in the JWKS
until the tokens it signed have expired.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from interop_support import (
    Latchkey,
    assert_matches_me,
    header_of,
    joserfc_decode,
    pyjwt_decode,
    serve_latchkey,
)

from e2e.conftest import CLI_TIMEOUT, clean_env

pytestmark = pytest.mark.e2e

SWITCH_TIMEOUT = 15.0  # seconds for the server to sign with the new key (reload every 1 s)
PYJWT_COOLDOWN = 30.0  # PyJWKClient's default cooldown_duration


def _rotate_available() -> bool:
    """Whether this checkout's CLI has ``latchkey keys rotate`` (being built alongside)."""
    result = subprocess.run(
        [sys.executable, "-m", "latchkey", "keys", "rotate", "--help"],
        env=clean_env(),
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return result.returncode == 0


rotate_available = _rotate_available()


@pytest.fixture(scope="module")
def rotation_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Latchkey]:
    with serve_latchkey(
        tmp_path_factory.mktemp("interop-rotation"), LATCHKEY_KEY_REFRESH_INTERVAL="1"
    ) as lk:
        yield lk


def rotate_immediately(lk: Latchkey) -> None:
    """``latchkey keys rotate --immediately`` with the server's own environment."""
    result = subprocess.run(
        [sys.executable, "-m", "latchkey", "keys", "rotate", "--immediately"],
        cwd=lk.processes.workdir,
        env=lk.server.env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def wait_for_new_kid(lk: Latchkey, pair: dict[str, Any], old_kid: str) -> dict[str, Any]:
    """Refresh ``pair`` until its access token is signed by another key than ``old_kid``."""
    deadline = time.monotonic() + SWITCH_TIMEOUT
    while header_of(pair["access_token"])["kid"] == old_kid:
        if time.monotonic() > deadline:
            pytest.fail(f"still signing with {old_kid} {SWITCH_TIMEOUT} s after the rotation")
        time.sleep(0.2)
        pair = lk.refresh(pair["refresh_token"])
    return pair


@pytest.mark.skipif(not rotate_available, reason="`latchkey keys rotate` does not exist yet")
def test_old_and_new_key_verify_after_rotation(rotation_server, node_verifier) -> None:
    lk = rotation_server
    expect = {"audience": lk.audience, "issuer": lk.issuer}
    pair_a = lk.login()
    token_a = pair_a["access_token"]
    kid_a = header_of(token_a)["kid"]
    assert [key["kid"] for key in lk.jwks()["keys"]] == [kid_a]

    # Verifiers that fetched the JWKS before the rotation, when it held key A only.
    cached = jwt.PyJWKClient(lk.jwks_url)  # default: refetch for an unknown kid, 30 s cooldown
    cached_eager = jwt.PyJWKClient(lk.jwks_url, cooldown_duration=0)
    pyjwt_decode(cached, token_a, **expect)
    pyjwt_decode(cached_eager, token_a, **expect)
    fetched_at = time.monotonic()

    rotate_immediately(lk)
    pair_b = wait_for_new_kid(lk, pair_a, kid_a)
    token_b = pair_b["access_token"]
    kid_b = header_of(token_b)["kid"]

    # Both keys are published: A until the tokens it signed have expired, B signs.
    assert {key["kid"] for key in lk.jwks()["keys"]} == {kid_a, kid_b}
    me_a, me_b = lk.me(token_a), lk.me(token_b)  # the server itself still accepts A

    # PyJWT, a fresh client: one fetch, both keys in it.
    fresh = jwt.PyJWKClient(lk.jwks_url)
    assert_matches_me(pyjwt_decode(fresh, token_a, **expect), me_a)
    assert_matches_me(pyjwt_decode(fresh, token_b, **expect), me_b)

    # PyJWT, a client whose cached set lacks kid B: get_signing_key() refetches the JWKS once
    # for an unknown kid, but PyJWT 2.15 allows that only cooldown_duration (30 s by default)
    # after its last successful fetch. So a client that fetched the set just before an
    # `--immediately` rotation rejects the new key's tokens until the cooldown is over (or
    # its 300 s cache lifespan ends); without the cooldown it learns key B at once. (Node's
    # jose does the same with its own 30 s cooldownDuration.) A rotation that publishes the
    # new key before it signs avoids this.
    assert_matches_me(pyjwt_decode(cached_eager, token_b, **expect), me_b)
    assert_matches_me(pyjwt_decode(cached_eager, token_a, **expect), me_a)
    if time.monotonic() - fetched_at < PYJWT_COOLDOWN - 5:
        with pytest.raises(jwt.PyJWKClientError, match="Unable to find a signing key"):
            pyjwt_decode(cached, token_b, **expect)
    assert_matches_me(pyjwt_decode(cached, token_a, **expect), me_a)

    # joserfc, with the key set fetched now.
    for token, me in ((token_a, me_a), (token_b, me_b)):
        verified = joserfc_decode(lk, token)
        assert verified.header["typ"] == "at+jwt"
        assert_matches_me(verified.claims, me)
    assert joserfc_decode(lk, token_a).header["kid"] == kid_a
    assert joserfc_decode(lk, token_b).header["kid"] == kid_b

    # Node.js jose: one process, one createRemoteJWKSet for both tokens.
    payload_a, payload_b = node_verifier.verify(lk, token_a, token_b)
    assert_matches_me(payload_a, me_a)
    assert_matches_me(payload_b, me_b)
