"""Password hashing: Argon2id, NFKC, no truncation, dummy hash for unknown users, rehash."""

from __future__ import annotations

import string

import pytest

from latchkey.core.passwords import (
    MAX_PASSWORD_LENGTH,
    Argon2Parameters,
    PasswordHasher,
    normalize_password,
)

CHEAP = Argon2Parameters(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(CHEAP)


def _long_password(length: int) -> str:
    """A password whose characters vary, so no prefix equals it by accident."""
    chars = string.ascii_letters + string.digits + "!#%&"
    return "".join(chars[(i * 7 + i // 66) % len(chars)] for i in range(length))


def test_hash_and_verify(hasher: PasswordHasher) -> None:
    """The right password verifies, with no rehash needed."""
    stored = hasher.hash(PASSWORD)
    assert hasher.verify(stored, PASSWORD) == (True, None)


@pytest.mark.parametrize(
    "attempt", ["", "correct horse battery stapl", PASSWORD + " ", PASSWORD.upper(), "x"]
)
def test_wrong_password_is_false(hasher: PasswordHasher, attempt: str) -> None:
    """Any other password gives (False, None)."""
    assert hasher.verify(hasher.hash(PASSWORD), attempt) == (False, None)


def test_unknown_user_is_false(hasher: PasswordHasher) -> None:
    """verify(None, pw) is False for any password: the dummy hash is checked instead."""
    assert hasher.verify(None, PASSWORD) == (False, None)
    assert hasher.verify(None, "") == (False, None)


def test_unknown_user_goes_through_the_dummy_hash(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For an unknown user, Argon2 runs against the dummy hash, as for a real one."""
    seen: list[str] = []
    inner = hasher._hasher
    original = inner.verify

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(inner, name)

        def verify(self, hash: str, password: str) -> bool:
            seen.append(hash)
            return original(hash, password)

    monkeypatch.setattr(hasher, "_hasher", Spy())
    assert hasher.verify(None, PASSWORD) == (False, None)
    assert seen == [hasher._dummy]
    assert seen[0].startswith("$argon2id$v=19$m=8,t=1,p=1$")


def test_hash_is_argon2id_with_the_configured_parameters(hasher: PasswordHasher) -> None:
    """The stored hash is an argon2id PHC string with m, t, p as configured."""
    stored = hasher.hash(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert PASSWORD not in stored


def test_hash_is_salted(hasher: PasswordHasher) -> None:
    """Two hashes of the same password differ, and both verify."""
    a, b = hasher.hash(PASSWORD), hasher.hash(PASSWORD)
    assert a != b
    assert hasher.verify(a, PASSWORD)[0] and hasher.verify(b, PASSWORD)[0]


def test_nfkc_ligature_matches_plain_letters(hasher: PasswordHasher) -> None:
    """NFKC: a password with the 'ﬁ' ligature matches the same one typed with 'f' 'i'."""
    assert normalize_password("ﬁsh") == "fish"
    assert hasher.verify(hasher.hash("ﬁsh ﬁllet"), "fish fillet") == (True, None)
    assert hasher.verify(hasher.hash("fish fillet"), "ﬁsh ﬁllet") == (True, None)


def test_nfkc_composed_and_decomposed_forms_match(hasher: PasswordHasher) -> None:
    """'é' as one code point and as 'e' plus a combining accent are the same password."""
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert composed != decomposed
    assert hasher.verify(hasher.hash(composed), decomposed) == (True, None)
    assert hasher.verify(hasher.hash(decomposed), composed) == (True, None)


def test_nfkc_keeps_different_passwords_apart(hasher: PasswordHasher) -> None:
    """Normalisation does not fold case or strip accents."""
    stored = hasher.hash("café")
    assert hasher.verify(stored, "cafe") == (False, None)
    assert hasher.verify(stored, "CAFÉ") == (False, None)


@pytest.mark.parametrize("length", [1024, MAX_PASSWORD_LENGTH])
def test_long_passwords_are_not_truncated(hasher: PasswordHasher, length: int) -> None:
    """1,024- and 4,096-character passwords verify, and their 1,023-character prefix does not."""
    password = _long_password(length)
    assert len(password) == length
    stored = hasher.hash(password)
    assert hasher.verify(stored, password) == (True, None)
    assert hasher.verify(stored, password[:1023]) == (False, None)
    assert hasher.verify(stored, password[:-1]) == (False, None)
    assert hasher.verify(stored, password[:-1] + "?") == (False, None)


def test_hash_with_other_parameters_is_rehashed(hasher: PasswordHasher) -> None:
    """A hash made with other parameters verifies and yields a new hash with the current ones."""
    old = PasswordHasher(Argon2Parameters(time_cost=2, memory_cost=16, parallelism=1))
    stored = old.hash(PASSWORD)
    ok, new_hash = hasher.verify(stored, PASSWORD)
    assert ok is True
    assert new_hash is not None and new_hash != stored
    assert new_hash.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert hasher.verify(new_hash, PASSWORD) == (True, None)


def test_wrong_password_on_old_hash_gives_no_rehash(hasher: PasswordHasher) -> None:
    """A wrong password against an outdated hash is (False, None): nothing to store."""
    old = PasswordHasher(Argon2Parameters(time_cost=2, memory_cost=16, parallelism=1))
    assert hasher.verify(old.hash(PASSWORD), "wrong") == (False, None)


def test_rehash_keeps_the_normalised_password(hasher: PasswordHasher) -> None:
    """A rehash of a ligature password still matches its plain-letter form."""
    old = PasswordHasher(Argon2Parameters(time_cost=2, memory_cost=16, parallelism=1))
    ok, new_hash = hasher.verify(old.hash("ﬁne"), "ﬁne")
    assert ok and new_hash is not None
    assert hasher.verify(new_hash, "fine") == (True, None)


@pytest.mark.parametrize(
    "stored", ["", "not-a-hash", "$argon2id$", "$2b$12$abcdefghijklmnopqrstuv"]
)
def test_malformed_stored_hash_is_false(hasher: PasswordHasher, stored: str) -> None:
    """A stored value that is not an Argon2 hash never verifies and raises nothing."""
    assert hasher.verify(stored, PASSWORD) == (False, None)


def test_default_parameters() -> None:
    """The defaults follow RFC 9106's second recommendation: t=3, 64 MiB, p=4."""
    assert Argon2Parameters() == Argon2Parameters(time_cost=3, memory_cost=65536, parallelism=4)
