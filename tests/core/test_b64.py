"""Canonical base64url (RFC 7515 §2, RFC 4648 §5): one accepted encoding per byte string."""

from __future__ import annotations

import base64
import binascii
import os
import random
import re

import pytest

from latchkey.core.b64 import Base64Error, b64url_decode, b64url_decode_bytes, b64url_encode

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _lax_decode(text: str) -> bytes:
    """What a forgiving decoder (Python's own) makes of ``text``: it ignores unused bits."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"fooba", "Zm9vYmE"),
        (b"foobar", "Zm9vYmFy"),
        (b"\xfb\xff", "-_8"),
    ],
)
def test_known_encodings(data: bytes, text: str) -> None:
    """The RFC 4648 §10 vectors, unpadded, and the URL-safe characters encode and decode."""
    assert b64url_encode(data) == text
    assert b64url_decode(text) == data
    assert b64url_decode_bytes(text.encode("ascii")) == data


def test_roundtrip_every_length() -> None:
    """Random data of every length from 0 to 99 bytes survives encode then decode."""
    for length in range(100):
        data = os.urandom(length)
        text = b64url_encode(data)
        assert "=" not in text and "+" not in text and "/" not in text
        assert b64url_decode(text) == data


def test_roundtrip_every_byte_value() -> None:
    """All 256 byte values, in every position mod 3, roundtrip."""
    data = bytes(range(256))
    for start in range(3):
        chunk = data[start:]
        assert b64url_decode(b64url_encode(chunk)) == chunk


@pytest.mark.parametrize("text", ["Zg==", "Zg=", "Zm8=", "Zm9vYg==", "Zm9v=", "=", "Zm=v"])
def test_padding_is_refused(text: str) -> None:
    """Any '=' (trailing padding or inside the text) is refused."""
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize("text", ["+_8", "-/8", "+/8=", "Zm9v+A", "Zm9v/A"])
def test_standard_alphabet_is_refused(text: str) -> None:
    """'+' and '/' from the standard alphabet are not base64url."""
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize("text", [" Zm9v", "Zm9v ", "Zm\n9v", "Zm9v\n", "Zm9\tv", "Zm\r\n9v"])
def test_whitespace_is_refused(text: str) -> None:
    """Whitespace anywhere is refused, even where a lax decoder would skip it."""
    with pytest.raises(Base64Error):
        b64url_decode(text)


@pytest.mark.parametrize("text", ["Z", "Zm9vY", "Zm9vYmFyZ", "A"])
def test_length_one_mod_four_is_refused(text: str) -> None:
    """A length of 1 mod 4 cannot encode whole bytes and is refused."""
    with pytest.raises(Base64Error):
        b64url_decode(text)


def test_non_canonical_trailing_bits_qq_vs_qr() -> None:
    """'QQ' and 'QR' both mean b'A' to a lax decoder; only the canonical 'QQ' is accepted."""
    assert _lax_decode("QR") == _lax_decode("QQ") == b"A"
    assert b64url_decode("QQ") == b"A"
    with pytest.raises(Base64Error):
        b64url_decode("QR")


@pytest.mark.parametrize("prefix", ["", "Zm9v"])
def test_two_char_tail_accepts_only_zero_unused_bits(prefix: str) -> None:
    """A 2-character tail accepts exactly the 4 last characters whose 4 unused bits are zero."""
    accepted = set()
    for char in ALPHABET:
        text = prefix + "Q" + char
        try:
            decoded = b64url_decode(text)
        except Base64Error:
            continue
        assert decoded == _lax_decode(text)
        accepted.add(char)
    assert accepted == set("AQgw")


@pytest.mark.parametrize("prefix", ["", "Zm9v"])
def test_three_char_tail_accepts_only_zero_unused_bits(prefix: str) -> None:
    """A 3-character tail accepts exactly the 16 last characters whose 2 unused bits are zero."""
    accepted = set()
    for char in ALPHABET:
        text = prefix + "Zm" + char
        try:
            decoded = b64url_decode(text)
        except Base64Error:
            continue
        assert decoded == _lax_decode(text)
        accepted.add(char)
    assert accepted == set("AEIMQUYcgkosw048")


def test_every_byte_string_has_exactly_one_accepted_encoding() -> None:
    """For short inputs, no two accepted 2- or 3-character texts decode to the same bytes."""
    seen: dict[bytes, str] = {}
    for first in ALPHABET:
        for second in ALPHABET:
            text = first + second
            try:
                data = b64url_decode(text)
            except Base64Error:
                continue
            assert data not in seen, (text, seen.get(data))
            seen[data] = text
    assert len(seen) == 256


@pytest.mark.parametrize("text", ["Zm9v!A", "Zm.v", "Zm9v\x00A", "Zm9v%2B"])
def test_other_characters_are_refused(text: str) -> None:
    """Characters outside the URL-safe alphabet are refused."""
    with pytest.raises(Base64Error):
        b64url_decode(text)


def test_non_ascii_text_is_refused() -> None:
    """A str with non-ASCII characters raises Base64Error, not UnicodeEncodeError."""
    with pytest.raises(Base64Error):
        b64url_decode("Zm9vé")


def test_bytes_decoder_applies_the_same_rules() -> None:
    """b64url_decode_bytes refuses padding and non-canonical tails like the str decoder."""
    assert b64url_decode_bytes(b"QQ") == b"A"
    for bad in (b"QQ==", b"QR", b"Q", b"Q Q"):
        with pytest.raises(Base64Error):
            b64url_decode_bytes(bad)


def test_base64_error_is_a_value_error() -> None:
    """Base64Error subclasses ValueError, so generic handlers catch it."""
    assert issubclass(Base64Error, ValueError)


def _reference_decode(data: bytes) -> bytes | None:
    """The same rules through the standard library's strict decoder (slow but plain): what
    the fast decoder must agree with. ``None`` where the text must be refused."""
    if len(data) % 4 == 1 or re.fullmatch(rb"[A-Za-z0-9_-]*", data) is None:
        return None
    padded = data.replace(b"-", b"+").replace(b"_", b"/") + b"=" * (-len(data) % 4)
    decoded = binascii.a2b_base64(padded, strict_mode=True)
    return decoded if b64url_encode(decoded).encode("ascii") == data else None


def test_fast_decoder_agrees_with_the_reference_on_random_texts() -> None:
    """Random texts over the URL-safe alphabet plus characters that must be refused ('+', '/',
    '=', whitespace, NUL, non-ASCII bytes): accepted and refused exactly where the reference
    says, with the same bytes."""
    pool = (ALPHABET * 8).encode("ascii") + b"+/= \n\t\x00!.\x80\xff"
    rng = random.Random(7515)
    for _ in range(20_000):
        text = bytes(rng.choice(pool) for _ in range(rng.randrange(0, 24)))
        expected = _reference_decode(text)
        if expected is None:
            with pytest.raises(Base64Error):
                b64url_decode_bytes(text)
        else:
            assert b64url_decode_bytes(text) == expected
