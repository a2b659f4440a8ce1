"""User accounts, as the core sees them."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


def username_key(username: str) -> str:
    """The form that makes usernames unique: NFKC, case-folded, trimmed."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    password_hash: str
    created_at: float
    scope: str = ""
    disabled_at: float | None = None
    epoch: int = 0  # the generation of its sessions: older ones are ended (core/epochs.py)
    not_before: float | None = None  # when every session of the user last ended at once

    @property
    def key(self) -> str:
        return username_key(self.username)

    def __repr__(self) -> str:  # never print the hash
        return f"User(id={self.id!r}, username={self.username!r})"
