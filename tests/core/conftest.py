"""Fixtures for the core unit tests: one generated signing key per algorithm, made once."""

from __future__ import annotations

import pytest

from latchkey.core.keys import ALGORITHMS, SigningKey


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """One signing key per supported algorithm (RSA generation is slow: do it once)."""
    return {alg: SigningKey.generate(alg) for alg in ALGORITHMS}


@pytest.fixture(scope="session")
def rsa_key(keys: dict[str, SigningKey]) -> SigningKey:
    return keys["RS256"]


@pytest.fixture(scope="session")
def other_rsa_key() -> SigningKey:
    """An RS256 key that no verifier trusts."""
    return SigningKey.generate("RS256")
