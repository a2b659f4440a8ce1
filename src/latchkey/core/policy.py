"""What a username and a password may be: OWASP ASVS v5 chapter 6.2 (password security).

Pure: standard library only. Both functions raise :class:`~latchkey.core.errors.InvalidRequest`
(``invalid_request``, 400) with a description that says what is allowed and never echoes the
password.

- :func:`normalize_username` returns the display form (NFKC, trimmed). Uniqueness is decided
  elsewhere, case-insensitively, by :func:`latchkey.core.users.username_key`.
- :class:`PasswordPolicy` checks a new password: length only, counted in characters (Unicode
  code points) after NFKC normalisation, as :mod:`latchkey.core.passwords` hashes it; no
  composition rules; the common/breached list; the username and the service name. It never
  changes the password: what is hashed and verified is exactly what was given (ASVS 6.2.8).
- The common-password list is Django's ``common-passwords.txt.gz`` (see ``data/NOTICE``),
  loaded lazily, once, into a frozenset of case-folded entries.
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from dataclasses import dataclass
from importlib.resources import files

from .errors import InvalidRequest

# --- usernames -------------------------------------------------------------------------------

USERNAME_MIN_LENGTH = 3
USERNAME_MAX_LENGTH = 64
USERNAME_PUNCTUATION = frozenset("._-@+")

# Longer raw input is refused before it is normalised (it cannot be a username once trimmed,
# save for absurd amounts of surrounding white space).
_USERNAME_RAW_LIMIT = 1024

USERNAME_LENGTH_ERROR = (
    f"The username must be {USERNAME_MIN_LENGTH} to {USERNAME_MAX_LENGTH} characters long."
)
USERNAME_CHARACTERS_ERROR = (
    "The username may contain only letters, digits and the characters . _ - @ + "
    "(no spaces, control characters, invisible characters or emoji)."
)
USERNAME_START_ERROR = "The username must start with a letter or a digit."


def normalize_username(raw: str) -> str:
    """The display form of ``raw``: NFKC-normalised, trimmed and checked.

    Allowed: 3 to 64 characters, each a Unicode letter or digit (``str.isalnum``) or one of
    ``. _ - @ +``; the first a letter or digit. White space, control and format characters
    (such as U+200D ZERO WIDTH JOINER) and emoji are none of these, so they are refused.
    """
    if len(raw) > _USERNAME_RAW_LIMIT:
        raise InvalidRequest(USERNAME_LENGTH_ERROR)
    name = unicodedata.normalize("NFKC", raw).strip()
    if not USERNAME_MIN_LENGTH <= len(name) <= USERNAME_MAX_LENGTH:
        raise InvalidRequest(USERNAME_LENGTH_ERROR)
    if not all(ch.isalnum() or ch in USERNAME_PUNCTUATION for ch in name):
        raise InvalidRequest(USERNAME_CHARACTERS_ERROR)
    if not name[0].isalnum():
        raise InvalidRequest(USERNAME_START_ERROR)
    return name


# --- passwords -------------------------------------------------------------------------------

DEFAULT_MIN_PASSWORD_LENGTH = 8  # ASVS 6.2.1: at least 8 characters
# ASVS 6.2.9: at least 64 characters must be allowed. passwords.MAX_PASSWORD_LENGTH (4096, the
# cap on request bodies) is not imported: that module needs argon2, and this one stays stdlib.
DEFAULT_MAX_PASSWORD_LENGTH = 1024
_ASVS_MIN_LENGTH = 8  # ASVS 6.2.1
_ASVS_MAX_LENGTH_FLOOR = 64  # ASVS 6.2.9

# ASVS 6.2.11: context-specific words (the service's name), compared case-folded.
CONTEXT_WORDS = frozenset({"latchkey"})

# NFKC composition turns at most 4 code points into 1 (the longest canonical decomposition,
# e.g. U+1F82, has 4), so an input longer than 4 * max_length is too long once normalised too.
_NFKC_MAX_SHRINK = 4

PASSWORD_COMMON_ERROR = (
    "This password is too common: it appears in a list of frequently used and breached "
    "passwords. Choose another one, for example a passphrase of several unrelated words."
)
PASSWORD_USERNAME_ERROR = "The password must not be the username or contain it."
PASSWORD_CONTEXT_ERROR = "The password must not be the name of this service."


def password_too_short_error(min_length: int) -> str:
    return f"The password must be at least {min_length} characters long."


def password_too_long_error(max_length: int) -> str:
    return f"The password must be at most {max_length} characters long."


def _fold(text: str) -> str:
    """Case-insensitive, compatibility-normalised form, for comparisons only."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@functools.cache
def common_passwords() -> frozenset[str]:
    """The common/breached password list, case-folded (loaded on first use, then cached)."""
    resource = files("latchkey.core") / "data" / "common-passwords.txt.gz"
    text = gzip.decompress(resource.read_bytes()).decode("utf-8")
    return frozenset(folded for line in text.splitlines() if (folded := _fold(line.strip())))


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """Rules for a new password (registration, change, reset). Lengths count characters
    (code points) of the NFKC form. No composition rules (ASVS 6.2.5): no required mix of
    upper case, digits or symbols."""

    min_length: int = DEFAULT_MIN_PASSWORD_LENGTH
    max_length: int = DEFAULT_MAX_PASSWORD_LENGTH

    def __post_init__(self) -> None:
        if self.min_length < _ASVS_MIN_LENGTH:
            raise ValueError(f"min_length must be at least {_ASVS_MIN_LENGTH} (ASVS 6.2.1)")
        if self.max_length < max(_ASVS_MAX_LENGTH_FLOOR, self.min_length):
            raise ValueError(
                f"max_length must be at least {_ASVS_MAX_LENGTH_FLOOR} (ASVS 6.2.9) "
                "and at least min_length"
            )

    def check(self, password: str, *, username: str | None = None) -> None:
        """Raise :class:`InvalidRequest` if ``password`` may not be set; return otherwise.

        ``username`` is the account's username (any form: it is compared case-folded).
        """
        if len(password) > _NFKC_MAX_SHRINK * self.max_length:
            raise InvalidRequest(password_too_long_error(self.max_length))
        normalized = unicodedata.normalize("NFKC", password)  # what the hasher hashes
        # ASVS 6.2.1: a minimum of 8 characters (configurable upwards).
        if len(normalized) < self.min_length:
            raise InvalidRequest(password_too_short_error(self.min_length))
        # ASVS 6.2.9: at least 64 characters are allowed; beyond max_length is refused,
        # never truncated (ASVS 6.2.8).
        if len(normalized) > self.max_length:
            raise InvalidRequest(password_too_long_error(self.max_length))
        folded = _fold(normalized)
        bare = folded.strip()
        # ASVS 6.2.11: context-specific words — the username (equal, or contained when it has
        # at least 4 characters) and the service's name.
        if username is not None:
            user = _fold(username).strip()
            if user and (bare == user or (len(user) >= 4 and user in folded)):
                raise InvalidRequest(PASSWORD_USERNAME_ERROR)
        if bare in CONTEXT_WORDS:
            raise InvalidRequest(PASSWORD_CONTEXT_ERROR)
        # ASVS 6.2.4 / 6.2.12: not among the most common / breached passwords.
        common = common_passwords()
        if folded in common or bare in common:
            raise InvalidRequest(PASSWORD_COMMON_ERROR)
