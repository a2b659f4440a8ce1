"""The key schedule: each key's state decided from the stored rows and the clock alone."""

from __future__ import annotations

import pytest

from latchkey.core.clock import ManualClock
from latchkey.core.errors import ConfigurationError
from latchkey.core.keyring import KeyRing, KeyState, KeyTimes, StoredKey, schedule
from latchkey.core.keys import SigningKey
from latchkey.core.sealing import Sealer

T0 = 1_800_000_000.0
TIMES = KeyTimes(token_lifetime=900, leeway=5, propagation=10)


def row(kid: str, created: float, activates: float, retired: float | None = None) -> StoredKey:
    return StoredKey(kid, "RS256", b"sealed", created, activates, retired)


def states(keys: list[StoredKey], now: float) -> dict[str, KeyState]:
    return {status.key.kid: status.state for status in schedule(keys, now, TIMES)}


def test_prepublished_key_signs_at_its_activation_and_the_old_one_retires() -> None:
    """Pending until activates_at, then signing; the previous key retires then and is dropped
    once every token it signed has expired (lifetime + leeway after its last signature)."""
    keys = [row("a", T0, T0), row("b", T0 + 100, T0 + 700)]
    assert states(keys, T0 + 699) == {"a": KeyState.SIGNING, "b": KeyState.PENDING}
    assert states(keys, T0 + 700) == {"a": KeyState.RETIRING, "b": KeyState.SIGNING}
    old = schedule(keys, T0 + 700, TIMES)[0]
    assert (old.retires_at, old.dropped_after) == (T0 + 700, T0 + 700 + 900 + 5)
    assert states(keys, T0 + 1604.9)["a"] is KeyState.RETIRING
    assert states(keys, T0 + 1605)["a"] is KeyState.DROPPED


def test_immediate_rotation_keeps_the_old_key_one_reload_longer() -> None:
    """A key that signs at once may reach some instance only at its next reload: the key it
    replaces stays published ``propagation`` longer."""
    keys = [row("a", T0, T0), row("b", T0 + 100, T0 + 100)]
    old = schedule(keys, T0 + 100, TIMES)[0]
    assert old.retires_at == T0 + 100
    assert old.dropped_after == T0 + 100 + 10 + 900 + 5


def test_newest_created_key_wins_over_an_older_pending_one() -> None:
    """An immediate rotation after a scheduled one: the newest key signs, also after the
    older pending key's activation time; that key never signs."""
    keys = [row("a", T0, T0), row("b", T0 + 10, T0 + 610), row("c", T0 + 20, T0 + 20)]
    assert states(keys, T0 + 19)["b"] is KeyState.PENDING
    assert states(keys, T0 + 20) == {
        "a": KeyState.RETIRING,
        "b": KeyState.RETIRING,  # superseded: published a while, never signs
        "c": KeyState.SIGNING,
    }
    assert states(keys, T0 + 700) == {
        "a": KeyState.RETIRING,
        "b": KeyState.RETIRING,
        "c": KeyState.SIGNING,
    }


def test_the_signing_key_is_never_dropped() -> None:
    """However old, the only key signs; so does the newest one when all others are gone."""
    assert states([row("a", T0, T0)], T0 + 10 * 365 * 86400) == {"a": KeyState.SIGNING}
    keys = [row("a", T0, T0), row("b", T0 + 1, T0 + 1)]
    assert states(keys, T0 + 10 * 365 * 86400) == {"a": KeyState.DROPPED, "b": KeyState.SIGNING}


def test_withdrawn_key_is_neither_published_nor_signing_from_its_retired_at() -> None:
    """A stored retired_at (compromise) ends the key at once; the newer key signs."""
    keys = [row("a", T0, T0, retired=T0 + 50), row("b", T0 + 50, T0 + 50)]
    statuses = schedule(keys, T0 + 50, TIMES)
    assert [s.state for s in statuses] == [KeyState.WITHDRAWN, KeyState.SIGNING]
    assert statuses[0].dropped_after == T0 + 50
    assert not statuses[0].published


def test_ring_switches_signer_and_drops_by_the_clock_without_reload(
    rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    """Loaded once: the pending key signs at its activation and the old key leaves the ring
    at its drop time, with no further load."""
    clock = ManualClock(T0)
    sealer = Sealer(b"s" * 32)
    ring = KeyRing(sealer, clock=clock, times=TIMES)
    stored = [
        StoredKey.seal(rsa_key, sealer, now=T0, activates_at=T0),
        StoredKey.seal(other_rsa_key, sealer, now=T0 + 1, activates_at=T0 + 600),
    ]
    ring.load(stored, clock.now())
    assert ring.signing.kid == rsa_key.kid
    assert {key["kid"] for key in ring.to_jwks()["keys"]} == {rsa_key.kid, other_rsa_key.kid}
    clock.set(T0 + 600)
    assert ring.signing.kid == other_rsa_key.kid
    assert ring.get(rsa_key.kid) is not None
    clock.set(T0 + 600 + 905)
    assert ring.get(rsa_key.kid) is None
    assert [key["kid"] for key in ring.to_jwks()["keys"]] == [other_rsa_key.kid]
    assert [s.state for s in ring.status()] == [KeyState.DROPPED, KeyState.SIGNING]


def test_ring_without_active_key_refuses_to_sign(rsa_key: SigningKey) -> None:
    """A ring whose only key is still pending publishes it but has no signer."""
    sealer = Sealer(b"s" * 32)
    ring = KeyRing(sealer, times=TIMES)
    ring.load([StoredKey.seal(rsa_key, sealer, now=T0, activates_at=T0 + 60)], T0)
    assert ring.get(rsa_key.kid) is not None
    with pytest.raises(ConfigurationError):
        _ = ring.signing


def test_prepared_keys_are_not_opened_again_by_load(
    rsa_key: SigningKey, other_rsa_key: SigningKey
) -> None:
    """prepare() opens (unseals, parses) the published keys and changes nothing; load() with
    its result opens none itself: the service runs prepare() off its event loop."""

    class CountingSealer(Sealer):
        opened = 0

        def open(self, box: bytes, context: bytes) -> bytes:
            CountingSealer.opened += 1
            return super().open(box, context)

    sealer = CountingSealer(b"s" * 32)
    ring = KeyRing(sealer, times=TIMES)
    stored = [
        StoredKey.seal(rsa_key, sealer, now=T0, activates_at=T0),
        StoredKey.seal(other_rsa_key, sealer, now=T0 + 1, activates_at=T0 + 600),
    ]
    opened = ring.prepare(stored, T0)
    assert set(opened) == {rsa_key.kid, other_rsa_key.kid}
    assert CountingSealer.opened == 2
    assert ring.get(rsa_key.kid) is None  # prepare() loaded nothing
    ring.load(stored, T0, opened)
    assert CountingSealer.opened == 2
    assert ring.signing.kid == rsa_key.kid
    assert ring.prepare(stored, T0).keys() == opened.keys()
    assert CountingSealer.opened == 2  # the ring's open keys are reused
