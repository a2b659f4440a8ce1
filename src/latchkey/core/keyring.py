"""The set of signing keys an instance knows, loaded from the shared store.

Every instance holds the same ring: all keys that are not retired are published (JWKS) and
accepted; the newest key whose ``activates_at`` has passed signs. A key stored with a later
``activates_at`` is published before it signs, so caches of the JWKS learn it in time.
Private keys arrive sealed and are opened once per key, not once per reload.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ConfigurationError
from .keys import SigningKey, VerificationKey
from .sealing import Sealer


@dataclass(frozen=True, slots=True)
class StoredKey:
    kid: str
    alg: str
    sealed_private_key: bytes
    created_at: float
    activates_at: float
    retired_at: float | None = None

    def __repr__(self) -> str:
        return f"StoredKey(kid={self.kid!r}, alg={self.alg!r})"

    @classmethod
    def seal(cls, key: SigningKey, sealer: Sealer, *, now: float, activates_at: float) -> StoredKey:
        return cls(
            kid=key.kid,
            alg=key.alg,
            sealed_private_key=sealer.seal(key.private_pem(), key.kid.encode()),
            created_at=now,
            activates_at=activates_at,
        )


class KeyRing:
    """A :class:`~latchkey.core.keysets.KeySource` whose content the service reloads."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._opened: dict[str, SigningKey] = {}
        self._published: dict[str, VerificationKey] = {}
        self._stored: list[StoredKey] = []
        self._signing: SigningKey | None = None

    def get(self, kid: str) -> VerificationKey | None:
        return self._published.get(kid)

    def __iter__(self) -> Iterator[VerificationKey]:
        return iter(list(self._published.values()))

    @property
    def stored(self) -> list[StoredKey]:
        return list(self._stored)

    @property
    def signing(self) -> SigningKey:
        if self._signing is None:
            raise ConfigurationError("no signing key is active yet")
        return self._signing

    def _open(self, stored: StoredKey) -> SigningKey:
        key = self._opened.get(stored.kid)
        if key is None:
            pem = self._sealer.open(stored.sealed_private_key, stored.kid.encode())
            key = SigningKey.from_pem(pem)
            if key.kid != stored.kid or key.alg != stored.alg:
                raise ConfigurationError(f"stored key {stored.kid} does not match its kid/alg")
            self._opened[stored.kid] = key
        return key

    def load(self, stored: Iterable[StoredKey], now: float) -> None:
        """Replace the ring's content with ``stored`` as of ``now``."""
        live = sorted(
            (key for key in stored if key.retired_at is None or key.retired_at > now),
            key=lambda key: (key.activates_at, key.created_at, key.kid),
        )
        opened = {key.kid: self._open(key) for key in live}
        active = [key for key in live if key.activates_at <= now]
        self._stored = live
        self._published = {kid: key.public for kid, key in opened.items()}
        self._signing = opened[active[-1].kid] if active else None
        self._opened = opened

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.to_jwk() for key in self._published.values()]}
