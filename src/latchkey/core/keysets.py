"""Where a verifier finds the key a token's ``kid`` names."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigurationError
from .keys import VerificationKey


class KeySource(Protocol):
    """Looks up a verification key by ``kid``; ``None`` when the kid is unknown. A source
    that cannot tell now raises :class:`~latchkey.core.errors.KeySetUnavailable`."""

    def get(self, kid: str) -> VerificationKey | None: ...


@runtime_checkable
class RefreshingKeySource(KeySource, Protocol):
    """A source that fetches its keys in the background (a JWKS URL): it can fetch them
    before the first request, and its background work can be stopped."""

    def warm_up(self, timeout: float | None = None) -> bool: ...

    async def warm_up_async(self, timeout: float | None = None) -> bool: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class StaticKeySet:
    """A fixed set of keys, e.g. parsed from a JWKS document."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self._keys = {key.kid: key for key in keys}

    def get(self, kid: str) -> VerificationKey | None:
        return self._keys.get(kid)

    def __iter__(self) -> Any:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> StaticKeySet:
        """RFC 7517 §5. Keys latchkey cannot use (other types, ``use: enc``) are skipped."""
        members = jwks.get("keys")
        if not isinstance(members, list):
            raise ConfigurationError("a JWKS needs a 'keys' list")
        keys = []
        for jwk in members:
            if not isinstance(jwk, dict):
                raise ConfigurationError("every JWKS entry must be an object")
            try:
                keys.append(VerificationKey.from_jwk(jwk))
            except ConfigurationError:
                continue
        if not keys:
            raise ConfigurationError("the JWKS holds no usable signature key")
        return cls(keys)

    @classmethod
    def from_jwks_file(cls, path: str | Path) -> StaticKeySet:
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read JWKS file {path}: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigurationError("a JWKS file must hold a JSON object")
        return cls.from_jwks(document)

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.to_jwk() for key in self._keys.values()]}
