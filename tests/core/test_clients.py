"""Client secrets and client authentication (RFC 6749 §2.3.1), as pure functions."""

from __future__ import annotations

import base64
import hashlib

import pytest

from latchkey.core.clients import (
    SECRET_PREFIX,
    hash_secret,
    is_client_id,
    new_client,
    parse_basic,
    secret_matches,
)
from latchkey.core.errors import InvalidClient, InvalidRequest

T0 = 1_800_000_000.0


def test_new_client_keeps_only_a_hash() -> None:
    """A new client has a random 32-hex id and a secret of 32 random bytes behind a prefix;
    the client holds only the secret's SHA-256, and its repr not even that."""
    client, secret = new_client("  billing-api ", T0)
    assert client.name == "billing-api"
    assert client.created_at == T0
    assert is_client_id(client.id)
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.urlsafe_b64decode(secret[len(SECRET_PREFIX) :] + "=")) == 32
    assert client.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert secret not in repr(client) and client.secret_hash.hex() not in repr(client)
    other, other_secret = new_client("billing-api", T0)
    assert (other.id, other_secret) != (client.id, secret)


@pytest.mark.parametrize("name", ["", "  ", "a\nb", "\x1b[31m", "x" * 256])
def test_new_client_refuses_bad_names(name: str) -> None:
    """A name has 1 to 255 printable characters."""
    with pytest.raises(InvalidRequest):
        new_client(name, T0)


def test_secret_matches() -> None:
    """The right secret matches; a wrong one, a prefix of it, or any for no client does not."""
    client, secret = new_client("api", T0)
    assert secret_matches(client, secret)
    assert not secret_matches(client, secret[:-1])
    assert not secret_matches(client, secret + "x")
    assert not secret_matches(client, "")
    assert not secret_matches(None, secret)
    assert hash_secret("\ud800") != hash_secret("")  # lone surrogates hash, never raise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0" * 32, True),
        ("a1" * 16, True),
        ("A" * 32, False),
        ("0" * 31, False),
        ("\x00" * 32, False),
    ],
)
def test_is_client_id(text: str, expected: bool) -> None:
    """Only 32 lowercase hex digits can be a client id."""
    assert is_client_id(text) is expected


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_parse_basic_form_decodes() -> None:
    """The id and secret are form-urlencoded under the base64 (RFC 6749 §2.3.1); the scheme
    name is case-insensitive (RFC 7617 §2)."""
    assert parse_basic(basic(b"id:secret")) == ("id", "secret")
    assert parse_basic(basic(b"a%3Ab:c+d%2B")) == ("a:b", "c d+")
    assert parse_basic("basic " + base64.b64encode(b"id:se:cret").decode()) == ("id", "se:cret")
    assert parse_basic(basic(b"id:")) == ("id", "")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic",
        "Basic !!!",
        "Basic \u00e9",
        basic(b"no-colon"),
        basic(b"\xff:x"),
        basic(b"id:%ff"),
        "Digest username=x",
    ],
)
def test_parse_basic_refuses(header: str) -> None:
    """Anything but well-formed Basic credentials is invalid_client."""
    with pytest.raises(InvalidClient):
        parse_basic(header)
