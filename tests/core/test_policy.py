"""Username and password policy: ASVS v5 6.2 (length, no composition rules, common list,
context-specific words), NFKC, and error descriptions that never echo the password."""

from __future__ import annotations

import gzip
import string
from importlib.resources import files

import pytest

from latchkey.core.errors import InvalidRequest
from latchkey.core.policy import (
    PASSWORD_COMMON_ERROR,
    PASSWORD_CONTEXT_ERROR,
    PASSWORD_USERNAME_ERROR,
    USERNAME_CHARACTERS_ERROR,
    USERNAME_LENGTH_ERROR,
    USERNAME_START_ERROR,
    PasswordPolicy,
    common_passwords,
    normalize_username,
    password_too_long_error,
    password_too_short_error,
)

POLICY = PasswordPolicy()
STRONG = "maroon quokka juggles seventeen teapots"


def _varied(length: int) -> str:
    """A password of exactly ``length`` characters that is in no list."""
    chars = string.ascii_letters + string.digits + "!#%&"
    return "".join(chars[(i * 7 + i // 66) % len(chars)] for i in range(length))


def _refused(password: str, *, username: str | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        POLICY.check(password, username=username)
    err = info.value
    assert err.error == "invalid_request"
    assert err.status_code == 400
    if password.strip():
        assert password not in err.description
        assert password.casefold() not in err.description.casefold()
    return err


# --- usernames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["alice", "Ålesund", "bob.smith@example.com", "a_b-c+d", "abc", "7up", "Ζωή", "山田太郎"]
)
def test_username_accepted_as_given(raw: str) -> None:
    """Letters (any script), digits and . _ - @ + are allowed; the case is kept."""
    assert normalize_username(raw) == raw


def test_username_is_trimmed() -> None:
    """Surrounding white space is not part of the name."""
    assert normalize_username("  alice\t\n") == "alice"


def test_username_nfkc() -> None:
    """Fullwidth and other compatibility forms become their plain form."""
    assert normalize_username("\uff41\uff4c\uff49\uff43\uff45") == "alice"  # fullwidth
    assert normalize_username("ﬁsh") == "fish"
    # A decomposed Å (A + COMBINING RING ABOVE) is composed, so it is a letter.
    assert normalize_username("A\u030alesund") == "Ålesund"


def test_username_length_bounds() -> None:
    """3 to 64 characters, counted after normalisation."""
    assert normalize_username("a" * 64) == "a" * 64
    for raw in ["", "   ", "ab", " ab ", "a" * 65, "\uff41" * 65, "a" * 5000]:
        with pytest.raises(InvalidRequest) as info:
            normalize_username(raw)
        assert info.value.description == USERNAME_LENGTH_ERROR


@pytest.mark.parametrize("raw", [".alice", "_alice", "-alice", "@alice", "+alice", "..."])
def test_username_must_start_with_letter_or_digit(raw: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        normalize_username(raw)
    assert info.value.description == USERNAME_START_ERROR


@pytest.mark.parametrize(
    "raw",
    [
        "bob smith",  # space inside
        "bob\u00a0smith",  # no-break space (NFKC: a plain space)
        "bob\tsmith",  # tab
        "bob\x00smith",  # control characters
        "bob\x1bsmith",
        "bob\x7fsmith",
        "bob\u200dsmith",  # ZERO WIDTH JOINER (format character)
        "bob\u200bsmith",  # ZERO WIDTH SPACE
        "bob\u202esmith",  # RIGHT-TO-LEFT OVERRIDE
        "bob\ufeffsmith",  # ZERO WIDTH NO-BREAK SPACE
        "bob😀",  # emoji
        "👩\u200d💻dev",  # emoji joined with ZWJ
        "bob/smith",
        "bob'smith",
        "bob<smith>",
        "bob#1",
        "bob,smith",
    ],
)
def test_username_refused_characters(raw: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        normalize_username(raw)
    assert info.value.error == "invalid_request"
    assert info.value.description == USERNAME_CHARACTERS_ERROR


def test_username_errors_say_what_is_allowed() -> None:
    assert "3 to 64" in USERNAME_LENGTH_ERROR
    assert "letters, digits" in USERNAME_CHARACTERS_ERROR
    assert ". _ - @ +" in USERNAME_CHARACTERS_ERROR
    assert "letter or a digit" in USERNAME_START_ERROR


# --- password length (ASVS 6.2.1, 6.2.9) -----------------------------------------------------


def test_seven_characters_refused_eight_accepted() -> None:
    err = _refused(_varied(7))
    assert err.description == password_too_short_error(8)
    assert err.description == "The password must be at least 8 characters long."
    POLICY.check(_varied(8))


def test_length_counts_characters_after_nfkc() -> None:
    """Eight code points, more than eight bytes: accepted. Fullwidth digits fold to ASCII."""
    POLICY.check("ĉŝĝĥĵŭéà")
    # Seven characters, one of which NFKC expands into three ("㎏" → "kg", "…" → "..."):
    POLICY.check("zq…wx㎏v")
    assert len("zq…wx㎏v") == 7
    # And an 8-code-point input that composes into 7 characters is too short.
    assert _refused("zqwxvbe\u0301").description == password_too_short_error(8)


def test_max_length_accepted_and_one_more_refused() -> None:
    POLICY.check(_varied(1024))
    err = _refused(_varied(1025))
    assert err.description == password_too_long_error(1024)
    assert err.description == "The password must be at most 1024 characters long."


def test_huge_input_refused_as_too_long() -> None:
    _refused(_varied(1024) * 1000)


def test_64_character_passphrase_accepted() -> None:
    """ASVS 6.2.9: at least 64 characters must be allowed."""
    phrase = "the quiet harbour listens while eleven violet kites drift eastward"[:64]
    assert len(phrase) == 64
    POLICY.check(phrase)


def test_no_truncation_or_change() -> None:
    """check() returns nothing: it never hands back a shortened or altered password."""
    assert POLICY.check(STRONG) is None  # type: ignore[func-returns-value]


# --- composition (ASVS 6.2.5) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "quietmarblecanyonfox",  # all lower case, 20 characters
        "QUIETMARBLECANYONFOX",
        "39571804662918",
        "quiet marble canyon fox",
        "ñandú pingüino cigüeña",
        STRONG,
    ],
)
def test_no_composition_rules(password: str) -> None:
    POLICY.check(password)


# --- common and breached passwords (ASVS 6.2.4, 6.2.12) --------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "password1",
        "Password1",
        "PASSWORD1",
        "qwertyuiop",
        "QwErTyUiOp",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11",  # fullwidth "password1"
        "12345678",
        "iloveyou",
        " password1 ",
    ],
)
def test_common_passwords_refused(password: str) -> None:
    err = _refused(password)
    assert err.description == PASSWORD_COMMON_ERROR


def test_common_list_ships_and_loads() -> None:
    """The data file is in the package, found through importlib.resources."""
    resource = files("latchkey.core") / "data" / "common-passwords.txt.gz"
    assert resource.is_file()
    assert len(gzip.decompress(resource.read_bytes()).splitlines()) >= 19_000
    assert (files("latchkey.core") / "data" / "NOTICE").is_file()
    common = common_passwords()
    assert isinstance(common, frozenset)
    assert len(common) >= 19_000
    assert {"password1", "qwertyuiop", "123456"} <= common
    assert all(entry == entry.casefold() for entry in common)
    assert common_passwords() is common  # loaded once


def test_short_entries_in_list_still_refused() -> None:
    """Entries shorter than min_length are in the list; a longer min_length refuses them too."""
    assert "123456" in common_passwords()
    _refused("123456")


# --- context-specific words (ASVS 6.2.11) ----------------------------------------------------


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("alice.smith", "alice.smith"),
        ("ALICE.SMITH", "Alice.Smith"),
        (
            "\uff41\uff4c\uff49\uff43\uff45\uff0e\uff53\uff4d\uff49\uff54\uff48",
            "alice.smith",
        ),  # fullwidth, NFKC
        ("my name is bob.smith!", "bob.smith"),  # contains a username of ≥ 4 characters
        ("xxBOB.Sxx-plus", "bob.s"),
        ("hunter2-alice-forever", "Alice"),
    ],
)
def test_username_equal_or_contained_refused(password: str, username: str) -> None:
    err = _refused(password, username=username)
    assert err.description == PASSWORD_USERNAME_ERROR
    assert username not in err.description


def test_short_username_may_be_part_of_the_password() -> None:
    """A username of fewer than 4 characters is refused only as the whole password (which
    the minimum length refuses anyway), not as a part of it."""
    POLICY.check("bob-the-builder-canoe", username="bob")
    POLICY.check("maroon quokka bob juggles", username="Bob")


def test_username_none_or_blank_is_ignored() -> None:
    POLICY.check(STRONG, username=None)
    POLICY.check(STRONG, username="")
    POLICY.check(STRONG, username="   ")


def test_service_name_refused() -> None:
    for password in ["latchkey", "LatchKey", " LATCHKEY "]:
        err = _refused(password)
        assert err.description == PASSWORD_CONTEXT_ERROR


# --- error descriptions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("S3cr!t", None),
        (_varied(1025), None),
        ("password1", None),
        ("Password1", None),
        ("hunter2-alice-forever", "alice"),
        ("latchkey", None),
    ],
)
def test_description_never_contains_the_password(password: str, username: str | None) -> None:
    err = _refused(password, username=username)
    assert password not in err.description
    assert password not in str(err)
    assert password not in repr(err)


# --- the policy itself -----------------------------------------------------------------------


def test_defaults_and_immutability() -> None:
    policy = PasswordPolicy()
    assert (policy.min_length, policy.max_length) == (8, 1024)
    with pytest.raises(AttributeError):
        policy.min_length = 4  # type: ignore[misc]


def test_stricter_policy() -> None:
    policy = PasswordPolicy(min_length=15, max_length=64)
    with pytest.raises(InvalidRequest) as info:
        policy.check(_varied(14))
    assert info.value.description == "The password must be at least 15 characters long."
    policy.check(_varied(15))
    policy.check(_varied(64))
    with pytest.raises(InvalidRequest):
        policy.check(_varied(65))


@pytest.mark.parametrize(("min_length", "max_length"), [(7, 1024), (8, 63), (100, 80), (0, 1024)])
def test_policy_below_asvs_is_refused(min_length: int, max_length: int) -> None:
    with pytest.raises(ValueError, match="ASVS"):
        PasswordPolicy(min_length=min_length, max_length=max_length)
