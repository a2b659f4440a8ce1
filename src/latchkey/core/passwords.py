"""Password hashing with Argon2id (argon2-cffi): ASVS v5 V6.2 (passwords), V11.4 (hashing).

- Passwords are NFKC-normalised before hashing (NIST SP 800-63B §5.1.1.2), never
  truncated (Argon2 takes input of any length), limited only to a
  generous maximum so that a request cannot make us hash megabytes.
- :meth:`PasswordHasher.verify` for an unknown user checks against a dummy hash made with the
  same parameters, so unknown users cost the same as wrong passwords (no timing oracle).
- When the configured parameters change, a successful login yields a fresh hash to store.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MAX_PASSWORD_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    time_cost: int = 3  # RFC 9106 §4, second recommended option ("low memory")
    memory_cost: int = 65536  # KiB = 64 MiB
    parallelism: int = 4


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    __slots__ = ("_dummy", "_hasher", "parameters")

    def __init__(self, parameters: Argon2Parameters | None = None) -> None:
        self.parameters = parameters or Argon2Parameters()
        self._hasher = argon2.PasswordHasher(
            time_cost=self.parameters.time_cost,
            memory_cost=self.parameters.memory_cost,
            parallelism=self.parameters.parallelism,
            type=argon2.Type.ID,
        )
        self._dummy = self._hasher.hash(secrets.token_urlsafe(32))

    def hash(self, password: str) -> str:
        return self._hasher.hash(normalize_password(password))

    def verify(self, stored_hash: str | None, password: str) -> tuple[bool, str | None]:
        """``(ok, new_hash)``: ``new_hash`` is set when the stored hash should be replaced.

        ``stored_hash=None`` means "no such user": the same work is done, and the answer is no.
        """
        normalized = normalize_password(password)
        try:
            self._hasher.verify(stored_hash or self._dummy, normalized)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if stored_hash is None:
            return False, None
        if self._hasher.check_needs_rehash(stored_hash):
            return True, self._hasher.hash(normalized)
        return True, None
