"""KeySetCache: when a remote key set is fresh, stale, too old or due, on plain numbers."""

from __future__ import annotations

import pytest

from latchkey import SigningKey
from latchkey.core.keycache import KeySetCache
from latchkey.core.keysets import StaticKeySet

T0 = 1_000_000.0


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture
def cache() -> KeySetCache:
    return KeySetCache(interval=5, max_stale=600, max_backoff=60)


def test_nothing_is_held_and_a_fetch_is_due_at_first(cache: KeySetCache, key) -> None:
    """Before any fetch: no key, not usable, due at once, unknown kids may fetch."""
    assert cache.key(key.kid, T0) is None
    assert not cache.usable(T0)
    assert cache.refresh_due(T0)
    assert cache.may_fetch_unknown(T0)
    assert not cache.settled_unknown(T0)
    assert cache.age(T0) is None
    assert cache.retry_after(T0) == 1


def test_a_set_is_refreshed_at_80_percent_and_usable_max_stale_past_its_lifetime(
    cache: KeySetCache, key
) -> None:
    """Lifetime 100 s: due at 80 s, stale at 100 s, unusable at 100 + 600 s."""
    cache.attempt(T0)
    assert cache.succeeded(StaticKeySet([key.public]), 100, T0) is None
    assert cache.key(key.kid, T0) is key.public
    assert not cache.refresh_due(T0 + 79.9)
    assert cache.refresh_due(T0 + 80)
    assert cache.key(key.kid, T0 + 699.9) is key.public
    assert cache.key(key.kid, T0 + 700) is None
    assert not cache.usable(T0 + 700)
    assert cache.age(T0 + 42) == 42


@pytest.mark.parametrize(
    ("lifetime", "span"), [(None, 300), (0, 5), (1, 5), (10**9, 86400), (60, 60)]
)
def test_lifetimes_are_defaulted_and_clamped(
    cache: KeySetCache, key, lifetime: float | None, span: float
) -> None:
    """No max-age means 300 s; max-age is clamped to [interval, 1 day]."""
    cache.succeeded(StaticKeySet([key.public]), lifetime, T0)
    assert cache.held is not None
    assert cache.held.fresh_until == T0 + span
    assert cache.next_refresh == T0 + max(span * 0.8, 5)


def test_failures_back_off_doubling_with_jitter_up_to_the_cap() -> None:
    """interval · 2ⁿ⁻¹, spread over its second half by the jitter, never under the interval,
    never over max_backoff."""
    least = KeySetCache(interval=5, max_stale=600, max_backoff=60)
    most = KeySetCache(interval=5, max_stale=600, max_backoff=60)
    for backoff in [5, 10, 20, 40, 60, 60, 60]:
        least.failed("HTTP 500", T0, jitter=0.0)
        most.failed("HTTP 500", T0, jitter=1.0)
        assert least.next_refresh == T0 + max(5, backoff / 2)
        assert most.next_refresh == T0 + backoff


def test_an_outage_starts_once_and_ends_with_its_length(cache: KeySetCache, key) -> None:
    """failed() says True only for the first failure; succeeded() returns the outage."""
    cache.succeeded(StaticKeySet([key.public]), 300, T0)
    assert cache.failed("timeout", T0 + 300, jitter=0.5) is True
    assert cache.failed("timeout", T0 + 330, jitter=0.5) is False
    assert cache.failed("HTTP 502", T0 + 390, jitter=0.5) is False
    assert cache.failure is not None
    assert cache.failure.reason == "HTTP 502"
    ended = cache.succeeded(StaticKeySet([key.public]), 300, T0 + 500)
    assert ended is not None
    assert (ended.since, ended.count) == (T0 + 300, 3)
    assert cache.failure is None
    assert cache.succeeded(StaticKeySet([key.public]), 300, T0 + 600) is None


def test_unknown_kids_fetch_at_most_once_per_interval(cache: KeySetCache) -> None:
    """The cooldown counts from the last attempt, whatever its outcome."""
    cache.attempt(T0)
    assert not cache.may_fetch_unknown(T0 + 4.9)
    assert cache.retry_after(T0 + 0.5) == 5
    assert cache.retry_after(T0 + 4.9) == 1
    assert cache.may_fetch_unknown(T0 + 5)


def test_an_unknown_kid_is_settled_only_after_a_good_fetch(cache: KeySetCache, key) -> None:
    """Unknown means a bad token only while the set is usable and the last fetch worked."""
    cache.succeeded(StaticKeySet([key.public]), 300, T0)
    assert cache.settled_unknown(T0 + 1)
    cache.failed("connection", T0 + 2, jitter=0)
    assert not cache.settled_unknown(T0 + 3)
    cache.succeeded(StaticKeySet([key.public]), 300, T0 + 4)
    assert cache.settled_unknown(T0 + 5)
    assert not cache.settled_unknown(T0 + 4 + 300 + 600)


def test_bad_parameters_are_refused() -> None:
    for options in (
        {"interval": 0, "max_stale": 1},
        {"interval": 5, "max_stale": -1},
        {"interval": 5, "max_stale": 1, "max_backoff": 1},
    ):
        with pytest.raises(ValueError):
            KeySetCache(**options)
