"""Refresh-token codec: authenticated wire form, deterministic successors, hidden secrets."""

from __future__ import annotations

import hashlib

import pytest

from latchkey.core.b64 import b64url_decode, b64url_encode
from latchkey.core.errors import ConfigurationError, RefreshTokenInvalid
from latchkey.core.refresh import PREFIX, RefreshToken, RefreshTokenCodec

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
NONCE = b"\x01" * 16


@pytest.fixture
def codec() -> RefreshTokenCodec:
    return RefreshTokenCodec(SECRET)


@pytest.fixture
def token(codec: RefreshTokenCodec) -> RefreshToken:
    return codec.first(codec.new_sid())


def test_encode_decode_roundtrip(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """decode(encode(t)) gives back the same sid, generation and secret."""
    text = codec.encode(token)
    assert codec.decode(text) == token
    successor = codec.successor(token, NONCE)
    assert codec.decode(codec.encode(successor)) == successor


def test_wire_form(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """The token is 'lkrt.' plus 96 base64url characters (72 octets), URL-safe."""
    text = codec.encode(token)
    assert text.startswith(PREFIX) and PREFIX == "lkrt."
    body = text[len(PREFIX) :]
    assert len(body) == 96
    assert set(body) <= set(ALPHABET)


def test_roundtrip_of_large_generation(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """Generations up to 2**64 - 1 roundtrip through the 8-octet field."""
    for generation in (1, 255, 256, 2**32, 2**64 - 1):
        t = RefreshToken(token.sid, generation, token.secret)
        assert codec.decode(codec.encode(t)).generation == generation


def test_first_token(codec: RefreshTokenCodec) -> None:
    """A session's first token has generation 0, its sid, and a fresh 32-octet secret."""
    sid = codec.new_sid()
    first, again = codec.first(sid), codec.first(sid)
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert first.sid == sid and first.generation == 0 and len(first.secret) == 32
    assert first.secret != again.secret
    assert codec.new_sid() != sid


def test_any_single_character_changed_is_invalid(
    codec: RefreshTokenCodec, token: RefreshToken
) -> None:
    """Replacing any one character of the token by any other character makes it invalid."""
    text = codec.encode(token)
    for index, original in enumerate(text):
        for replacement in ALPHABET + ".=+/ ":
            if replacement == original:
                continue
            changed = text[:index] + replacement + text[index + 1 :]
            with pytest.raises(RefreshTokenInvalid):
                codec.decode(changed)


def test_single_bit_flips_in_body_are_invalid(
    codec: RefreshTokenCodec, token: RefreshToken
) -> None:
    """Any token whose decoded body differs in one bit, re-encoded canonically, is invalid."""
    raw = b64url_decode(codec.encode(token)[len(PREFIX) :])
    for bit in range(len(raw) * 8):
        changed = bytearray(raw)
        changed[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(RefreshTokenInvalid):
            codec.decode(PREFIX + b64url_encode(bytes(changed)))


@pytest.mark.parametrize("prefix", ["", "lkrt", "lkrt_", "LKRT.", "lkat.", "lkrt..", "xlkrt."])
def test_wrong_prefix_is_invalid(
    codec: RefreshTokenCodec, token: RefreshToken, prefix: str
) -> None:
    """The body under any other prefix, or none, is invalid."""
    body = codec.encode(token)[len(PREFIX) :]
    with pytest.raises(RefreshTokenInvalid):
        codec.decode(prefix + body)


def test_wrong_length_is_invalid(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """One character more or less, or an empty body, is invalid."""
    text = codec.encode(token)
    for bad in (text[:-1], text + "A", text + "AAAA", text[:-4], PREFIX, ""):
        with pytest.raises(RefreshTokenInvalid):
            codec.decode(bad)


@pytest.mark.parametrize("char", ["+", "/", "=", " ", "\n", "é", "."])
def test_wrong_alphabet_is_invalid(
    codec: RefreshTokenCodec, token: RefreshToken, char: str
) -> None:
    """A character outside base64url in the body is invalid, at the same length."""
    text = codec.encode(token)
    with pytest.raises(RefreshTokenInvalid):
        codec.decode(text[:20] + char + text[21:])


@pytest.mark.parametrize("value", [None, 42, b"lkrt.AAAA", ["lkrt."]])
def test_non_str_is_invalid(codec: RefreshTokenCodec, value: object) -> None:
    """Only a str can be a refresh token."""
    with pytest.raises(RefreshTokenInvalid):
        codec.decode(value)


def test_valid_token_as_bytes_is_invalid(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """The right token passed as bytes is refused."""
    with pytest.raises(RefreshTokenInvalid):
        codec.decode(codec.encode(token).encode())


def test_token_from_another_secret_is_invalid(token: RefreshToken) -> None:
    """A token minted under another server secret does not authenticate."""
    mine, theirs = RefreshTokenCodec(SECRET), RefreshTokenCodec(OTHER_SECRET)
    with pytest.raises(RefreshTokenInvalid):
        mine.decode(theirs.encode(token))
    with pytest.raises(RefreshTokenInvalid):
        theirs.decode(mine.encode(token))


def test_successor_is_deterministic(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """The same token and nonce always give the same successor (the grace-window replay)."""
    first = codec.successor(token, NONCE)
    assert codec.successor(token, NONCE) == first
    assert RefreshTokenCodec(SECRET).successor(token, NONCE) == first  # restart-proof
    assert first.sid == token.sid
    assert first.generation == token.generation + 1
    assert len(first.secret) == 32 and first.secret != token.secret


def test_successor_differs_for_another_nonce(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """Another nonce gives another successor secret, of the same generation."""
    a = codec.successor(token, NONCE)
    b = codec.successor(token, b"\x02" * 16)
    assert a.generation == b.generation
    assert a.secret != b.secret
    assert codec.encode(a) != codec.encode(b)


def test_successor_depends_on_the_server_secret(token: RefreshToken) -> None:
    """Without the server secret, nothing in the database (token hashes, nonce) yields the
    successor: another secret derives another one."""
    ours = RefreshTokenCodec(SECRET).successor(token, NONCE)
    theirs = RefreshTokenCodec(OTHER_SECRET).successor(token, NONCE)
    assert ours.secret != theirs.secret


def test_successor_depends_on_the_previous_secret(codec: RefreshTokenCodec) -> None:
    """Two tokens of the same session and generation with different secrets have different
    successors."""
    sid = codec.new_sid()
    a, b = codec.first(sid), codec.first(sid)
    assert codec.successor(a, NONCE).secret != codec.successor(b, NONCE).secret


def test_digest_differs_per_generation(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """Each generation of a chain has its own digest; a token's digest is stable."""
    chain = [token]
    for _ in range(5):
        chain.append(codec.successor(chain[-1], NONCE))
    digests = [t.digest for t in chain]
    assert len(set(digests)) == len(digests)
    assert codec.decode(codec.encode(chain[3])).digest == digests[3]


def test_digest_covers_generation_and_sid(token: RefreshToken) -> None:
    """The same secret under another generation or sid has another digest."""
    assert RefreshToken(token.sid, 1, token.secret).digest != token.digest
    assert RefreshToken("00" * 16, 0, token.secret).digest != token.digest
    expected = hashlib.sha256(
        bytes.fromhex(token.sid) + token.generation.to_bytes(8, "big") + token.secret
    ).digest()
    assert token.digest == expected


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_short_secret_is_refused(length: int) -> None:
    """A server secret under 32 octets is a configuration error."""
    with pytest.raises(ConfigurationError):
        RefreshTokenCodec(b"k" * length)


def test_32_octet_secret_is_accepted() -> None:
    """32 octets is enough."""
    RefreshTokenCodec(b"k" * 32)


def test_repr_hides_the_secret(codec: RefreshTokenCodec, token: RefreshToken) -> None:
    """repr of a token shows sid and generation, not its secret; the codec shows no key."""
    text = repr(token)
    assert token.sid in text and "generation=0" in text
    assert token.secret.hex() not in text
    assert repr(token.secret) not in text
    assert "***" in text
    assert str(token) == text
    codec_text = repr(codec)
    assert SECRET.decode() not in codec_text and SECRET.hex() not in codec_text
