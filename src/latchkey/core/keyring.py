"""The set of signing keys an instance knows, loaded from the shared store, and their schedule.

Every instance holds the same ring, and derives each key's state from the stored rows and the
clock alone (:func:`schedule`), so instances agree without any write when a key changes state:

    created ──── activates_at ──────── retires_at ──────────────── dropped_after
    │ pending    │ signing             │ retiring                  │ dropped
    │ published  │ published, signs    │ published, verifies only  │ neither
    └ LATCHKEY_KEY_PREPUBLISH ┘        └ token lifetime + leeway ──┘

- A key is published (JWKS, RFC 7517 §5) from the moment it is stored, so that resource
  servers' JWKS caches learn it before the first token it signs reaches them. The ``kid`` of
  a token picks the key among those published (RFC 7517 §4.5: "to choose among a set of keys
  within a JWK Set during key rollover"); the key pins the algorithm (RFC 8725 §3.1).
- The most recently *created* key whose ``activates_at`` has passed signs. A newer key thus
  supersedes older ones, also a pending one (``keys rotate --immediately`` after a routine
  rotation ends with the newest key signing, not the older pending one).
- A key retires when a newer key activates; it keeps verifying until every token it may have
  signed has expired, then it is dropped. "May have signed" counts an instance that learns of
  the newer key late (``propagation``: it reloads the ring every few seconds).
- The signing key is never retired or dropped, whatever the dates: a ring always has a signer
  once one key has activated.
- A stored ``retired_at`` withdraws a key at that time: it stops signing and verifying at
  once (after a compromise); tokens it signed fail from then on.

Private keys arrive sealed and are opened once per key, not once per reload. Between reloads,
the ring re-evaluates its schedule from the clock it was given, so a pending key starts
signing at its ``activates_at`` and a retired key is dropped on time, with no reload needed.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .clock import Clock
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
    retired_at: float | None = None  # withdrawn at this time (compromise); None: by schedule

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

    def withdrawn(self, now: float) -> bool:
        return self.retired_at is not None and self.retired_at <= now


class KeyState(enum.StrEnum):
    PENDING = "pending"  # published, signs from activates_at
    SIGNING = "signing"  # published, signs new tokens
    RETIRING = "retiring"  # published, verifies the tokens it signed, signs no more
    DROPPED = "dropped"  # every token it signed has expired: neither published nor accepted
    WITHDRAWN = "withdrawn"  # its retired_at has passed: neither published nor accepted


_PUBLISHED = frozenset({KeyState.PENDING, KeyState.SIGNING, KeyState.RETIRING})


@dataclass(frozen=True, slots=True)
class KeyTimes:
    """What decides how long a key stays published after it stops signing."""

    token_lifetime: float  # the longest a token lives (LATCHKEY_ACCESS_TTL)
    leeway: float = 0.0  # verifiers accept a token this long past its exp (LATCHKEY_LEEWAY)
    propagation: float = 0.0  # how late an instance may learn of a new key (its reload period)


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One stored key as of one moment."""

    key: StoredKey
    state: KeyState
    retires_at: float | None  # when it stops (stopped) signing; None: no successor yet
    dropped_after: float | None  # when it leaves the JWKS and the verifier; None: not planned

    @property
    def published(self) -> bool:
        return self.state in _PUBLISHED


def _creation_order(key: StoredKey) -> tuple[float, str]:
    return (key.created_at, key.kid)


def _end_of_signing(
    key: StoredKey, newer: Sequence[StoredKey], times: KeyTimes
) -> tuple[float | None, float | None]:
    """``(retires_at, dropped_after)`` of ``key`` given the keys created after it."""
    # A newer key withdrawn before it ever signed replaced no one.
    successors = [k for k in newer if k.retired_at is None or k.retired_at > k.activates_at]
    retires = min((k.activates_at for k in successors), default=None)
    # Instances switch at the successor's activation, but one that has not reloaded since the
    # successor was stored keeps signing with ``key`` until it does.
    last_signature = min(
        (max(k.activates_at, k.created_at + times.propagation) for k in successors), default=None
    )
    dropped = None
    if last_signature is not None:
        # A token signed before ``last_signature`` has exp < last_signature + lifetime and is
        # accepted until exp + leeway: after that nothing the key signed can still verify.
        dropped = last_signature + times.token_lifetime + times.leeway
    if key.retired_at is not None:
        retires = key.retired_at if retires is None else min(retires, key.retired_at)
        dropped = key.retired_at if dropped is None else min(dropped, key.retired_at)
    return retires, dropped


def schedule(stored: Iterable[StoredKey], now: float, times: KeyTimes) -> list[KeyStatus]:
    """The state of every stored key at ``now``, oldest first. Pure: every instance computes
    the same from the same rows."""
    keys = sorted(stored, key=_creation_order)
    active = [key for key in keys if key.activates_at <= now and not key.withdrawn(now)]
    signer = active[-1] if active else None
    statuses = []
    for index, key in enumerate(keys):
        retires, dropped = _end_of_signing(key, keys[index + 1 :], times)
        if key.withdrawn(now):
            state = KeyState.WITHDRAWN
        elif key is signer:
            state = KeyState.SIGNING
            if retires is not None and retires <= now:  # newer keys were withdrawn: it signs on
                retires = dropped = None
        elif dropped is not None and dropped <= now:
            state = KeyState.DROPPED
        elif key.activates_at > now and (retires is None or retires > now):
            state = KeyState.PENDING
        else:  # signed and was replaced, or superseded while pending (never signs)
            state = KeyState.RETIRING
        statuses.append(KeyStatus(key, state, retires, dropped))
    return statuses


def _next_change(statuses: Iterable[KeyStatus], now: float) -> float:
    """The first moment after ``now`` at which :func:`schedule` may answer differently."""
    moments = (
        moment
        for status in statuses
        for moment in (status.key.activates_at, status.key.retired_at, status.dropped_after)
        if moment is not None and moment > now
    )
    return min(moments, default=math.inf)


# The most a token may live (LATCHKEY_ACCESS_TTL's bound): the safe default of a bare ring.
_LONGEST_LIFETIME = KeyTimes(token_lifetime=86400.0)


class KeyRing:
    """A :class:`~latchkey.core.keysets.KeySource` whose content the service reloads.

    With a ``clock``, the schedule is re-evaluated whenever the clock passes the next planned
    change (an activation, a drop), between reloads too; without one, only at :meth:`load`.
    """

    def __init__(
        self, sealer: Sealer, *, clock: Clock | None = None, times: KeyTimes = _LONGEST_LIFETIME
    ) -> None:
        self._sealer = sealer
        self._clock = clock
        self.times = times
        self._opened: dict[str, SigningKey] = {}
        self._published: dict[str, VerificationKey] = {}
        self._all: list[StoredKey] = []
        self._statuses: list[KeyStatus] = []
        self._signing: SigningKey | None = None
        self._next_change = math.inf

    def _current(self) -> None:
        if self._clock is not None:
            now = self._clock.now()
            if now >= self._next_change:
                self._evaluate(now)

    def get(self, kid: str) -> VerificationKey | None:
        self._current()
        return self._published.get(kid)

    def __iter__(self) -> Iterator[VerificationKey]:
        self._current()
        return iter(list(self._published.values()))

    @property
    def stored(self) -> list[StoredKey]:
        """The published keys, oldest first."""
        self._current()
        return [status.key for status in self._statuses if status.published]

    def status(self) -> list[KeyStatus]:
        """Every stored key (dropped and withdrawn ones too) with its state, oldest first."""
        self._current()
        return list(self._statuses)

    @property
    def signing(self) -> SigningKey:
        self._current()
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
        return key

    def prepare(self, stored: Iterable[StoredKey], now: float) -> dict[str, SigningKey]:
        """The keys :meth:`load` will need open (the published ones), unsealed and parsed:
        CPU-bound work the service runs off its event loop, then passes to :meth:`load`.
        Reads the ring, changes nothing: safe in another thread."""
        return {
            s.key.kid: self._open(s.key) for s in schedule(stored, now, self.times) if s.published
        }

    def load(
        self,
        stored: Iterable[StoredKey],
        now: float,
        opened: Mapping[str, SigningKey] | None = None,
    ) -> None:
        """Replace the ring's content with ``stored`` as of ``now``; keys in ``opened``
        (from :meth:`prepare`) are not opened again."""
        self._all = list(stored)
        if opened:
            self._opened = {**self._opened, **opened}
        self._evaluate(now)

    def _evaluate(self, now: float) -> None:
        statuses = schedule(self._all, now, self.times)
        # Only published keys stay open: a dropped key's private part is let go.
        opened = {s.key.kid: self._open(s.key) for s in statuses if s.published}
        signer = [opened[s.key.kid] for s in statuses if s.state is KeyState.SIGNING]
        self._statuses = statuses
        self._published = {kid: key.public for kid, key in opened.items()}
        self._signing = signer[0] if signer else None
        self._opened = opened
        self._next_change = _next_change(statuses, now)

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        self._current()
        return {"keys": [key.to_jwk() for key in self._published.values()]}
