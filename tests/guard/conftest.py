"""Fixtures for the guard tests: a signing key, tokens minted on a ManualClock, a Verifier
that trusts that key, and the example apps loaded from ``examples/``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from keyserver import KeyServer

from latchkey import ManualClock, SigningKey, Verifier
from latchkey.core.access import AccessTokenIssuer

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://auth.example.test"
AUDIENCE = "notes-api"
SUBJECT = "user-1"

Issue = Callable[..., str]


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="session")
def other_key() -> SigningKey:
    """A key no verifier trusts unless a test publishes it."""
    return SigningKey.generate("ES256")


@pytest.fixture
def verifier(signing_key: SigningKey, clock: ManualClock) -> Verifier:
    return Verifier([signing_key.public], issuer=ISSUER, audience=AUDIENCE, clock=clock)


@pytest.fixture
def issue(signing_key: SigningKey, clock: ManualClock) -> Issue:
    """``issue(scope=..., subject=..., key=...)`` mints an access token at the clock's time."""

    def mint(scope: str = "read", subject: str = SUBJECT, key: SigningKey | None = None) -> str:
        issuer = AccessTokenIssuer(
            key or signing_key, issuer=ISSUER, audience=AUDIENCE, ttl=900, clock=clock
        )
        return issuer.issue(
            subject=subject, sid="sid-1", scope=scope, auth_time=int(clock.now())
        ).token

    return mint


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import ``examples.<name>`` from the repository root."""

    def load(name: str) -> ModuleType:
        monkeypatch.syspath_prepend(str(ROOT))
        return importlib.import_module(f"examples.{name}")

    return load


@pytest.fixture
def verifier_options(clock: ManualClock) -> dict[str, object]:
    """The issuer, audience and clock every verifier in these tests uses."""
    return {"issuer": ISSUER, "audience": AUDIENCE, "clock": clock}


@pytest.fixture
def key_server(signing_key: SigningKey) -> Iterator[KeyServer]:
    """A real JWKS server publishing ``signing_key``; tests make it hang, refuse or fail."""
    server = KeyServer([signing_key])
    yield server
    server.stop()


RemoteVerifier = Callable[..., Verifier]


@pytest.fixture
def remote_verifier(
    key_server: KeyServer, verifier_options: dict[str, object]
) -> Iterator[RemoteVerifier]:
    """``remote_verifier(**options)``: a Verifier on the key server's URL, closed after the
    test (its background refresh stops)."""
    made: list[Verifier] = []

    def make(**options: object) -> Verifier:
        verifier = Verifier.from_jwks_url(key_server.url, **{**verifier_options, **options})
        made.append(verifier)
        return verifier

    yield make
    key_server.release()
    for verifier in made:
        verifier.close()
