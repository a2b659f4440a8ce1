"""Verifier.from_jwks_url against a real key server, from threads (the WSGI case): keys
fetched in the background, never on a request's path; caching, cooldown, rotation, outages.

Every "while the key server hangs" below is causal: the key server holds the fetch open until
the test releases it, so an answer given before that did not wait for the fetch.
"""

from __future__ import annotations

import logging
import threading

import pytest
from keyserver import KeyServer

from latchkey import InvalidToken, KeySetUnavailable, ManualClock, SigningKey, Verifier
from latchkey.adapters.remote_jwks import RemoteJWKS

INTERVAL = 30.0  # min_refetch_interval of the verifiers here
QUICK = 0.05  # a refresh_deadline that ends a request's wait long before the key server answers


def source_of(verifier: Verifier) -> RemoteJWKS:
    source = verifier.key_source
    assert isinstance(source, RemoteJWKS)
    return source


def refreshed(verifier: Verifier) -> None:
    """Wait until the fetch under way, if any, has landed."""
    assert source_of(verifier).join(timeout=30)


@pytest.fixture
def verifier(remote_verifier) -> Verifier:
    return remote_verifier(min_refetch_interval=INTERVAL)


def test_keys_are_fetched_once_for_many_tokens(key_server: KeyServer, verifier, issue) -> None:
    """Nothing is fetched before the first token; 50 tokens then share one fetch."""
    assert key_server.requests == 0
    for n in range(50):
        assert verifier.verify(issue(subject=f"user-{n}"))["sub"] == f"user-{n}"
    assert key_server.requests == 1


def test_warm_up_fetches_before_the_first_token(key_server: KeyServer, verifier, issue) -> None:
    """warm_up() fetches the keys at start-up; the first token then costs no fetch."""
    assert verifier.warm_up() is True
    assert key_server.requests == 1
    verifier.verify(issue())
    assert key_server.requests == 1


def test_warm_up_against_a_down_key_server_returns_false(
    key_server: KeyServer, verifier, issue
) -> None:
    """A key server that cannot be reached at start-up does not stop it: warm_up() says so,
    and tokens get KeySetUnavailable (503), not InvalidToken (401), until keys are held."""
    key_server.refuse()
    assert verifier.warm_up() is False
    with pytest.raises(KeySetUnavailable) as caught:
        verifier.verify(issue())
    assert not isinstance(caught.value, InvalidToken)
    assert caught.value.status_code == 503
    assert 1 <= caught.value.retry_after <= INTERVAL


def test_refresh_runs_in_the_background_ahead_of_max_age(
    key_server: KeyServer, verifier, issue, clock: ManualClock
) -> None:
    """The set (max-age 300 s by default) is refreshed once 80 % of it has passed, by the
    background fetch that the request wakes: the request itself does not wait for it."""
    verifier.verify(issue())
    clock.advance(239)
    verifier.verify(issue())
    refreshed(verifier)
    assert key_server.requests == 1  # not due yet
    key_server.hang()
    clock.advance(2)
    for _ in range(20):
        assert verifier.verify(issue())["sub"] == "user-1"
    key_server.wait_for(2)
    assert key_server.holding == 1  # every request above was answered with the fetch open
    key_server.release()
    refreshed(verifier)
    assert key_server.requests == 2


def test_stale_keys_verify_at_once_while_the_key_server_hangs(
    key_server: KeyServer, verifier, issue, clock: ManualClock
) -> None:
    """Past its max-age, with the refresh hung, a known key id is still answered at once."""
    verifier.verify(issue())
    key_server.hang()
    clock.advance(400)
    assert verifier.verify(issue())["sub"] == "user-1"
    key_server.wait_for(2)
    for _ in range(50):
        assert verifier.verify(issue())["sub"] == "user-1"
    assert key_server.holding == 1
    assert key_server.requests == 2  # the hung fetch is not started again per request


def test_unknown_kid_while_the_key_server_hangs_is_unavailable_not_invalid(
    key_server: KeyServer, remote_verifier, issue, other_key, clock: ManualClock
) -> None:
    """An unknown key id waits for the fetch at most refresh_deadline, then gets 503."""
    verifier = remote_verifier(min_refetch_interval=INTERVAL, refresh_deadline=QUICK)
    assert verifier.warm_up()
    key_server.hang()
    clock.advance(INTERVAL)
    with pytest.raises(KeySetUnavailable) as caught:
        verifier.verify(issue(key=other_key))
    assert key_server.holding == 1  # answered while the fetch it started is still open
    assert caught.value.retry_after >= 1
    assert verifier.verify(issue())["sub"] == "user-1"  # the known key is unaffected


@pytest.mark.parametrize("failure", ["refuse", "fail", "garbage", "not a jwks"])
def test_every_kind_of_failure_keeps_the_held_keys(
    key_server: KeyServer, verifier, issue, other_key, clock: ManualClock, failure: str
) -> None:
    """Refused connections, 500s and garbage all keep the held keys verifying, and make an
    unknown key id unavailable (503) rather than invalid (401)."""
    verifier.verify(issue())
    if failure == "not a jwks":
        key_server.garbage(b'{"keys": "none"}')
    else:
        getattr(key_server, failure)()
    clock.advance(INTERVAL)
    with pytest.raises(KeySetUnavailable):
        verifier.verify(issue(key=other_key))
    assert verifier.verify(issue())["sub"] == "user-1"


@pytest.mark.parametrize("failure", ["refuse", "fail", "garbage", "hang"])
def test_no_keys_yet_is_unavailable(
    key_server: KeyServer, remote_verifier, issue, failure: str
) -> None:
    """Before any fetch succeeded, every token gets KeySetUnavailable, in bounded time."""
    verifier = remote_verifier(refresh_deadline=QUICK)
    getattr(key_server, failure)()
    with pytest.raises(KeySetUnavailable):
        verifier.verify(issue())


def test_unknown_kid_after_a_good_fetch_is_invalid(
    key_server: KeyServer, verifier, issue, other_key
) -> None:
    """When the key server answered and the key id is not in its set, the token is bad."""
    with pytest.raises(InvalidToken):
        verifier.verify(issue(key=other_key))
    assert key_server.requests == 1
    assert verifier.verify(issue())["sub"] == "user-1"  # the fetched key is held
    assert key_server.requests == 1


def test_unknown_kids_fetch_at_most_once_per_interval(
    key_server: KeyServer, verifier, issue, other_key, clock: ManualClock
) -> None:
    """Tokens naming random key ids cannot make the guard fetch more than once per
    min_refetch_interval (the cooldown), whether the key server is up or failing."""
    verifier.verify(issue())
    stranger = issue(key=other_key)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            verifier.verify(stranger)
    assert key_server.requests == 1  # the first fetch was less than INTERVAL ago
    clock.advance(INTERVAL)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            verifier.verify(issue(key=SigningKey.generate("ES256")))
    assert key_server.requests == 2
    key_server.fail()
    clock.advance(INTERVAL)
    for _ in range(20):
        with pytest.raises(KeySetUnavailable):
            verifier.verify(stranger)
    assert key_server.requests == 3


def test_concurrent_unknown_kids_share_one_fetch(
    key_server: KeyServer, remote_verifier, issue, other_key, clock: ManualClock
) -> None:
    """Sixteen threads meeting an unknown key id while the key server hangs cause one fetch;
    each gets 503 once its deadline passes, while that fetch is still open."""
    verifier = remote_verifier(min_refetch_interval=INTERVAL, refresh_deadline=QUICK)
    assert verifier.warm_up()
    key_server.hang()
    clock.advance(INTERVAL)
    stranger = issue(key=other_key)
    barrier = threading.Barrier(16)
    outcomes: list[str] = []

    def attempt() -> None:
        barrier.wait(timeout=30)
        try:
            verifier.verify(stranger)
        except KeySetUnavailable:
            outcomes.append("unavailable")
        except BaseException as exc:  # pragma: no cover - reported below
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes == ["unavailable"] * 16
    assert key_server.holding == 1
    assert key_server.requests == 2


def test_rotated_key_verifies_after_one_fetch(
    key_server: KeyServer, verifier, issue, signing_key: SigningKey, clock: ManualClock
) -> None:
    """After the server publishes a new key, its tokens verify after exactly one fetch."""
    old_token = issue()
    verifier.verify(old_token)
    new_key = SigningKey.generate("EdDSA")
    key_server.keys = [new_key, signing_key]
    clock.advance(INTERVAL)
    new_token = issue(key=new_key)
    assert verifier.verify(new_token)["sub"] == "user-1"
    assert key_server.requests == 2
    for _ in range(10):
        verifier.verify(new_token)
        verifier.verify(old_token)
    assert key_server.requests == 2


def test_server_max_age_is_honoured_and_withdrawn_keys_stop_verifying(
    key_server: KeyServer, remote_verifier, issue, other_key, clock: ManualClock
) -> None:
    """The response's max-age sets when the refresh is due; a key the refresh no longer
    finds stops verifying as soon as that refresh has landed."""
    key_server.cache_control = "public, max-age=60"
    verifier = remote_verifier(min_refetch_interval=5)
    token = issue()
    verifier.verify(token)
    key_server.keys = [other_key]  # the server withdraws the key
    clock.advance(47)
    verifier.verify(token)
    refreshed(verifier)
    assert key_server.requests == 1  # due at 48 s (80 % of 60)
    clock.advance(2)
    verifier.verify(token)  # answered with the held key; wakes the refresh
    refreshed(verifier)
    assert key_server.requests == 2
    with pytest.raises(InvalidToken):
        verifier.verify(token)


def test_held_keys_stop_at_max_stale(
    key_server: KeyServer, remote_verifier, issue, clock: ManualClock, caplog
) -> None:
    """While the key server fails, the held keys verify for max_stale past their max-age,
    then no longer: the tokens get 503, and one more WARNING says so."""
    verifier = remote_verifier(min_refetch_interval=5, max_stale=600)
    verifier.verify(issue())
    key_server.fail()
    clock.advance(300 + 599)
    with caplog.at_level(logging.INFO, logger="latchkey.jwks"):
        assert verifier.verify(issue())["sub"] == "user-1"
        refreshed(verifier)
        clock.advance(1)
        with pytest.raises(KeySetUnavailable):
            verifier.verify(issue())
        refreshed(verifier)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "past max_stale (600 s)" in warnings[1]


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    key_server: KeyServer, remote_verifier, issue, other_key, clock: ManualClock, caplog
) -> None:
    """Many requests and several failed fetches make one WARNING naming the URL and the
    reason; the first good fetch after it makes one INFO."""
    verifier = remote_verifier(min_refetch_interval=5)
    verifier.verify(issue())
    key_server.fail(502)
    with caplog.at_level(logging.INFO, logger="latchkey.jwks"):
        for _ in range(4):
            clock.advance(300)
            for _ in range(10):
                verifier.verify(issue())
                with pytest.raises(KeySetUnavailable):
                    verifier.verify(issue(key=other_key))
            refreshed(verifier)
        key_server.answer()
        clock.advance(300)
        verifier.verify(issue())
        refreshed(verifier)
    assert key_server.requests == 6  # the first fetch, four failures, one success
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "latchkey.jwks"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]
    assert key_server.url in lines[0][1]
    assert "HTTP 502" in lines[0][1]
    assert "after 4 failed attempts" in lines[1][1]


def test_malformed_tokens_fetch_nothing(key_server: KeyServer, verifier) -> None:
    """Tokens refused before the key lookup never reach the key server."""
    for token in ["x.y.z", "", "a" * 9000, "eyJhbGciOiJFUzI1NiJ9.e30.AA"]:
        with pytest.raises(InvalidToken):
            verifier.verify(token)
    assert key_server.requests == 0


def test_metrics_show_the_age_and_the_failures(
    key_server: KeyServer, remote_verifier, issue, clock: ManualClock
) -> None:
    """The key set's age and failed fetches by reason are in prometheus-client's default
    registry, labelled with the URL."""
    from prometheus_client import REGISTRY

    verifier = remote_verifier(min_refetch_interval=5)
    labels = {"url": key_server.url}
    assert REGISTRY.get_sample_value("latchkey_guard_key_set_age_seconds", labels) is None
    verifier.verify(issue())
    clock.advance(250)
    assert REGISTRY.get_sample_value("latchkey_guard_key_set_age_seconds", labels) == 250
    key_server.fail()
    verifier.verify(issue())
    refreshed(verifier)
    failures = {**labels, "reason": "http_status"}
    name = "latchkey_guard_key_set_fetch_failures_total"
    assert REGISTRY.get_sample_value(name, failures) == 1
    key_server.refuse()
    clock.advance(300)
    verifier.verify(issue())
    refreshed(verifier)
    assert REGISTRY.get_sample_value(name, {**labels, "reason": "connection"}) == 1
