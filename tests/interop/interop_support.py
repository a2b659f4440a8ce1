"""Helpers of the interop tests: a running latchkey, the Node.js verifier, token tools.

Not named support.py, which tests/support.py already is on sys.path (``import support``);
fixtures live in conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from e2e.conftest import PASSWORD, Processes, Server, clean_env, http_client

NODE_DIR = Path(__file__).resolve().parent / "node"
NPM_TIMEOUT = 100.0  # seconds for `npm ci`; pytest-timeout gives a test (and its setup) 120
NODE_TIMEOUT = 30.0
USERNAME = "alice"
SCOPE = "read write"


@dataclass
class Latchkey:
    """A running ``latchkey serve`` with the user ``alice``, and what a verifier needs."""

    server: Server
    data_dir: Path
    processes: Processes
    alg: str

    @property
    def issuer(self) -> str:
        return self.server.env["LATCHKEY_ISSUER"]

    @property
    def audience(self) -> str:
        return "latchkey"  # the default LATCHKEY_AUDIENCE

    @property
    def jwks_url(self) -> str:
        return f"{self.server.base_url}/.well-known/jwks.json"

    def jwks(self) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/.well-known/jwks.json")
        assert response.status_code == 200, response.text
        jwks: dict[str, Any] = response.json()
        return jwks

    def client(self) -> httpx.Client:
        return http_client(self.server.base_url)

    def login(self, username: str = USERNAME) -> dict[str, Any]:
        """The token pair of a fresh login over HTTP."""
        with self.client() as client:
            response = client.post("/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.post("/auth/refresh", json={"refresh_token": refresh_token})
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    def me(self, access_token: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get("/auth/me", headers={"Authorization": f"Bearer {access_token}"})
        assert response.status_code == 200, response.text
        me: dict[str, Any] = response.json()
        return me


@contextmanager
def serve_latchkey(workdir: Path, alg: str = "RS256", **settings: str) -> Iterator[Latchkey]:
    """``latchkey serve`` signing with ``alg``, with user ``alice``; stopped on exit."""
    processes = Processes(workdir)
    data_dir = workdir / "data"
    settings = {"LATCHKEY_SIGNING_ALG": alg, **settings}
    try:
        # `latchkey migrate` makes the first signing key: it must see LATCHKEY_SIGNING_ALG.
        processes.migrate(data_dir, **settings)
        result = processes.cli(
            data_dir, "user", "add", USERNAME, "--scope", SCOPE, "--password-stdin",
            stdin=PASSWORD + "\n", **settings,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        server = processes.start_latchkey(data_dir, **settings)
        yield Latchkey(server, data_dir, processes, alg)
    finally:
        processes.stop_all()


# --- Node.js ---------------------------------------------------------------------------------


@dataclass
class NodeVerifier:
    """Runs node/verify.mjs; ``install_seconds`` is how long ``npm ci`` took (0: not run)."""

    node: str
    install_seconds: float

    def run(
        self, lk: Latchkey, *tokens: str, audience: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        command = [
            self.node, "verify.mjs", "--jwks", lk.jwks_url, "--issuer", lk.issuer,
            "--audience", audience or lk.audience, "--alg", lk.alg, *tokens,
        ]  # fmt: skip
        return subprocess.run(
            command,
            cwd=NODE_DIR,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )

    def verify(self, lk: Latchkey, *tokens: str) -> list[dict[str, Any]]:
        """The payloads jose verified, one per token; fails the test on any rejection."""
        result = self.run(lk, *tokens)
        assert result.returncode == 0, f"jose rejected a token:\n{result.stderr}"
        return [json.loads(line) for line in result.stdout.splitlines()]


def installed(package: str) -> str | None:
    try:
        manifest = json.loads((NODE_DIR / "node_modules" / package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version: str | None = manifest.get("version")
    return version


def locked(package: str) -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{package}"]["version"]
    return version


# --- tokens ----------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header, unverified (PyJWT's parser, not latchkey's)."""
    header: dict[str, Any] = jwt.get_unverified_header(token)
    return header


def tampered(token: str, **changes: Any) -> str:
    """``token`` with claims changed in its payload and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = b64url(json.dumps(claims, separators=(",", ":")).encode())
    assert forged != payload
    return f"{header}.{forged}.{signature}"


def assert_matches_me(claims: dict[str, Any], me: dict[str, Any]) -> None:
    """The verified claims name the same user, session, scope and expiry as /auth/me."""
    assert {key: claims[key] for key in ("sub", "sid", "scope", "exp")} == {
        key: me[key] for key in ("sub", "sid", "scope", "exp")
    }


def pyjwt_decode(client: jwt.PyJWKClient, token: str, **expect: Any) -> dict[str, Any]:
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=[key.algorithm_name],  # the alg of the JWK, not of the token's header
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        **expect,
    )
    return claims


def joserfc_decode(lk: Latchkey, token: str, audience: str | None = None) -> jose_jwt.Token:
    """Fetch the JWKS over HTTP, verify the signature with the key the token's ``kid`` names,
    allowing only that key's ``alg``; then validate iss, aud, exp, iat and sub."""
    jwks = httpx.get(lk.jwks_url, trust_env=False, timeout=30).raise_for_status().json()
    keyset = KeySet.import_key_set(jwks)
    kid = header_of(token)["kid"]
    [alg] = [key["alg"] for key in jwks["keys"] if key["kid"] == kid]
    # joserfc 1.8 warns (SecurityWarning) that "EdDSA" is deprecated by RFC 9864, which names
    # the fully specified "Ed25519"; it still verifies it. Expected here, not an error.
    warns = (
        pytest.warns(SecurityWarning, match="RFC 9864")
        if alg == "EdDSA"
        else contextlib.nullcontext()
    )
    with warns:
        token_obj = jose_jwt.decode(token, keyset, algorithms=[alg])
    registry = jose_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": lk.issuer},
        aud={"essential": True, "value": audience or lk.audience},
        exp={"essential": True},
        iat={"essential": True},
        sub={"essential": True},
    )
    registry.validate(token_obj.claims)
    return token_obj
