"""Verifier.from_jwks_url against a tiny local JWKS server: caching, refetch limits, rotation."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from latchkey import InvalidToken, ManualClock, SigningKey, Verifier

INTERVAL = 30.0  # min_refetch_interval of every verifier here


class JWKSServer:
    """Serves ``self.keys`` as a JWKS on 127.0.0.1 and counts the requests it got."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.status = 200  # set to 500 to make the server fail
        self.cache_control: str | None = None  # sent as Cache-Control when set
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with owner._lock:
                    owner.requests += 1
                    body = json.dumps({"keys": [k.public.to_jwk() for k in owner.keys]}).encode()
                    status = owner.status
                    cache_control = owner.cache_control
                if status != 200:
                    body = b"oops"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if cache_control:
                    self.send_header("Cache-Control", cache_control)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def jwks_server(signing_key: SigningKey) -> Iterator[JWKSServer]:
    server = JWKSServer([signing_key])
    yield server
    server.stop()


@pytest.fixture
def remote_verifier(jwks_server: JWKSServer, verifier_options: dict[str, object]) -> Verifier:
    return Verifier.from_jwks_url(
        jwks_server.url, min_refetch_interval=INTERVAL, **verifier_options
    )


def test_jwks_is_fetched_lazily_and_once(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue
) -> None:
    """No request until the first token; then 50 verifications share one fetch."""
    assert jwks_server.requests == 0
    for n in range(50):
        assert remote_verifier.verify(issue(subject=f"user-{n}"))["sub"] == f"user-{n}"
    assert jwks_server.requests == 1


def test_cached_keys_are_kept_for_the_default_max_age(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, clock: ManualClock
) -> None:
    """Without cache headers, keys are kept 5 minutes, then fetched again once."""
    remote_verifier.verify(issue())
    clock.advance(299)
    remote_verifier.verify(issue())
    assert jwks_server.requests == 1
    clock.advance(2)
    remote_verifier.verify(issue())
    remote_verifier.verify(issue())
    assert jwks_server.requests == 2


def test_server_max_age_is_honoured_and_dropped_keys_are_dropped(
    jwks_server: JWKSServer,
    verifier_options: dict[str, object],
    issue,
    other_key,
    clock: ManualClock,
) -> None:
    """The JWKS response's max-age sets the cache lifetime; a key removed from the JWKS stops
    verifying once the cached copy is stale."""
    jwks_server.cache_control = "public, max-age=60"
    verifier = Verifier.from_jwks_url(jwks_server.url, min_refetch_interval=5, **verifier_options)
    token = issue()
    verifier.verify(token)
    jwks_server.keys = [other_key]  # the server retires the key
    clock.advance(59)
    verifier.verify(token)
    assert jwks_server.requests == 1
    clock.advance(2)
    with pytest.raises(InvalidToken):
        verifier.verify(token)
    assert jwks_server.requests == 2


def test_a_failing_refetch_keeps_the_cached_keys(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, clock: ManualClock
) -> None:
    """When the JWKS URL fails after the cache expired, the keys held stay in use."""
    remote_verifier.verify(issue())
    jwks_server.status = 500
    clock.advance(400)
    assert remote_verifier.verify(issue())["sub"]
    assert jwks_server.requests == 2


def test_unknown_kid_refetches_at_most_once_per_interval(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, other_key, clock: ManualClock
) -> None:
    """Tokens of an unknown kid cause at most one refetch per min_refetch_interval."""
    remote_verifier.verify(issue())
    stranger = issue(key=other_key)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            remote_verifier.verify(stranger)
    assert jwks_server.requests == 1  # the first fetch was less than INTERVAL ago

    clock.advance(INTERVAL - 1)
    with pytest.raises(InvalidToken):
        remote_verifier.verify(stranger)
    assert jwks_server.requests == 1

    clock.advance(1)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            remote_verifier.verify(issue(key=other_key))
    assert jwks_server.requests == 2

    clock.advance(INTERVAL)
    for _ in range(20):
        with pytest.raises(InvalidToken):
            remote_verifier.verify(stranger)
    assert jwks_server.requests == 3


def test_first_token_with_unknown_kid_fetches_once(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, other_key
) -> None:
    """When the very first token names an unknown kid, the JWKS is fetched once, not per token."""
    stranger = issue(key=other_key)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            remote_verifier.verify(stranger)
    assert jwks_server.requests == 1
    assert remote_verifier.verify(issue())["sub"] == "user-1"  # the fetched key is cached
    assert jwks_server.requests == 1


def test_malformed_tokens_fetch_nothing(jwks_server: JWKSServer, remote_verifier: Verifier) -> None:
    """Tokens rejected before the key lookup never reach the JWKS server."""
    for token in ["x.y.z", "", "a" * 9000, "eyJhbGciOiJFUzI1NiJ9.e30.AA"]:
        with pytest.raises(InvalidToken):
            remote_verifier.verify(token)
    assert jwks_server.requests == 0


def test_concurrent_unknown_kids_share_one_refetch(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, other_key, clock: ManualClock
) -> None:
    """Many threads meeting an unknown kid at once cause a single refetch."""
    remote_verifier.verify(issue())
    clock.advance(INTERVAL)
    stranger = issue(key=other_key)
    barrier = threading.Barrier(16)
    failures: list[BaseException] = []

    def attempt() -> None:
        barrier.wait(timeout=10)
        try:
            remote_verifier.verify(stranger)
        except InvalidToken:
            return
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert failures == []
    assert jwks_server.requests == 2


def test_rotated_key_verifies_after_one_refetch(
    jwks_server: JWKSServer,
    remote_verifier: Verifier,
    issue,
    signing_key: SigningKey,
    clock: ManualClock,
) -> None:
    """After the server publishes a new key, its tokens verify after exactly one refetch."""
    old_token = issue()
    remote_verifier.verify(old_token)
    new_key = SigningKey.generate("EdDSA")
    jwks_server.keys = [new_key, signing_key]  # rotation: new key signs, old one still listed
    clock.advance(INTERVAL)

    new_token = issue(key=new_key)
    assert remote_verifier.verify(new_token)["sub"] == "user-1"
    assert jwks_server.requests == 2
    for _ in range(10):
        remote_verifier.verify(new_token)
        remote_verifier.verify(old_token)
    assert jwks_server.requests == 2


def test_rotation_within_the_interval_waits_for_it(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, clock: ManualClock
) -> None:
    """A new kid seen right after a fetch is refused until the interval has passed."""
    remote_verifier.verify(issue())
    new_key = SigningKey.generate("ES256")
    jwks_server.keys = [new_key]
    new_token = issue(key=new_key)
    with pytest.raises(InvalidToken):
        remote_verifier.verify(new_token)
    assert jwks_server.requests == 1
    clock.advance(INTERVAL)
    assert remote_verifier.verify(new_token)["sub"] == "user-1"
    assert jwks_server.requests == 2


def test_failed_refetch_keeps_the_known_keys(
    jwks_server: JWKSServer, remote_verifier: Verifier, issue, other_key, clock: ManualClock
) -> None:
    """A refetch that fails leaves the cached keys in place and is not retried at once."""
    remote_verifier.verify(issue())
    jwks_server.status = 500
    clock.advance(INTERVAL)
    with pytest.raises(InvalidToken):
        remote_verifier.verify(issue(key=other_key))
    assert jwks_server.requests == 2
    assert remote_verifier.verify(issue())["sub"] == "user-1"
    with pytest.raises(InvalidToken):
        remote_verifier.verify(issue(key=other_key))
    assert jwks_server.requests == 2
