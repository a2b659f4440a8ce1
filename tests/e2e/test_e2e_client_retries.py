"""LatchkeyAuth against a real ``latchkey serve`` through a transport that loses refresh
answers: each fault is retried with the same refresh token, and the session survives."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from latchkey.client import LatchkeyAuth, RefreshFailed

pytestmark = pytest.mark.e2e

BACKOFF = 0.01  # seconds: the tests wait on the server, not on the backoff


def forwarded_then(raise_: Callable[[httpx.Request], Exception]) -> Callable[..., Any]:
    """The request reaches the service (which rotates), then its answer is lost."""

    def fault(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        raise raise_(request)

    return fault


def gateway(status: int) -> Callable[..., Any]:
    """The request reaches the service, and a proxy answers ``status`` instead."""

    def fault(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        return httpx.Response(status, json={"error": "bad_gateway"}, request=request)

    return fault


AFTER_THE_SERVICE = {
    "read timeout": forwarded_then(lambda r: httpx.ReadTimeout("timed out", request=r)),
    "connection reset": forwarded_then(
        lambda r: httpx.ReadError("[Errno 104] Connection reset by peer", request=r)
    ),
    "server disconnected": forwarded_then(
        lambda r: httpx.RemoteProtocolError("Server disconnected", request=r)
    ),
    "500": gateway(500),
    "502": gateway(502),
    "504": gateway(504),
}
BEFORE_THE_SERVICE = {
    "connection refused": lambda r: httpx.ConnectError("[Errno 111] refused", request=r),
    "connect timeout": lambda r: httpx.ConnectTimeout("timed out", request=r),
    "write timeout": lambda r: httpx.WriteTimeout("timed out", request=r),
}


class Faults:
    """Loses the answers of the next refresh requests, one fault from ``plan`` each; counts
    the refresh requests sent and those that reached the service."""

    def __init__(self) -> None:
        self.plan: list[tuple[str, Any]] = []
        self.sent = 0
        self.reached = 0

    def before(self, request: httpx.Request) -> None:
        if request.url.path != "/auth/refresh":
            return
        self.sent += 1
        if self.plan and self.plan[0][0] == "before":
            raise self.plan.pop(0)[1](request)

    def after(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != "/auth/refresh":
            return response
        self.reached += 1
        if self.plan and self.plan[0][0] == "after":
            return self.plan.pop(0)[1](request, response)
        return response


class SyncFaultTransport(httpx.HTTPTransport):
    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.faults.before(request)
        response = super().handle_request(request)
        response.read()
        return self.faults.after(request, response)


class AsyncFaultTransport(httpx.AsyncHTTPTransport):
    def __init__(self, faults: Faults) -> None:
        super().__init__()
        self.faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.faults.before(request)
        response = await super().handle_async_request(request)
        await response.aread()
        return self.faults.after(request, response)


def refreshes(management_url: str, outcome: str) -> float:
    text = httpx.get(f"{management_url}/metrics", trust_env=False).text
    match = re.search(rf'^latchkey_refreshes_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    assert match, text
    return float(match[1])


def outcomes(management_url: str) -> dict[str, float]:
    return {o: refreshes(management_url, o) for o in ("rotated", "grace", "stale", "reused")}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in before if after[name] != before[name]}


def fresh_auth(
    base_url: str, client: httpx.Client | httpx.AsyncClient, token: str, **options: Any
) -> LatchkeyAuth:
    """An auth holding only a refresh token: its first request refreshes."""
    return LatchkeyAuth(
        base_url, refresh_token=token, client=client, retry_backoff=BACKOFF, **options
    )


@pytest.mark.parametrize("fault", sorted(AFTER_THE_SERVICE))
def test_sync_lost_answer_is_retried_into_the_grace_path(
    shared_latchkey, login, fault: str
) -> None:
    """The service rotates, the answer is lost, the auth sends the same token again and gets
    the successor already issued: one rotation, one grace replay, nothing revoked."""
    server = shared_latchkey.server
    faults = Faults()
    with httpx.Client(
        base_url=server.base_url, transport=SyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        pair = login(http, "writer")
        http.auth = auth = fresh_auth(server.base_url, http, pair["refresh_token"])
        before = outcomes(server.management_url)
        faults.plan = [("after", AFTER_THE_SERVICE[fault])]
        assert http.get("/auth/me").status_code == 200
        assert (faults.sent, faults.reached) == (2, 2)
        assert delta(before, outcomes(server.management_url)) == {"rotated": 1, "grace": 1}
        # The tokens it holds are the session's current ones: they rotate on.
        held = auth.tokens.refresh_token
        onward = http.post("/auth/refresh", json={"refresh_token": held}, auth=httpx.Auth())
        assert onward.status_code == 200, onward.text


@pytest.mark.parametrize("fault", sorted(AFTER_THE_SERVICE))
async def test_async_lost_answer_is_retried_into_the_grace_path(
    shared_latchkey, login, fault: str
) -> None:
    """As above, with httpx.AsyncClient."""
    server = shared_latchkey.server
    faults = Faults()
    with server.client() as plain:
        pair = login(plain, "writer")
    async with httpx.AsyncClient(
        base_url=server.base_url, transport=AsyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        http.auth = auth = fresh_auth(server.base_url, http, pair["refresh_token"])
        before = outcomes(server.management_url)
        faults.plan = [("after", AFTER_THE_SERVICE[fault])]
        assert (await http.get("/auth/me")).status_code == 200
        assert (faults.sent, faults.reached) == (2, 2)
        assert delta(before, outcomes(server.management_url)) == {"rotated": 1, "grace": 1}
        held = auth.tokens.refresh_token
        onward = await http.post("/auth/refresh", json={"refresh_token": held}, auth=httpx.Auth())
        assert onward.status_code == 200, onward.text


@pytest.mark.parametrize("fault", sorted(BEFORE_THE_SERVICE))
def test_request_that_never_arrived_is_sent_again(shared_latchkey, login, fault: str) -> None:
    """No connection, or the request could not be written: sent again, one plain rotation."""
    server = shared_latchkey.server
    faults = Faults()
    with httpx.Client(
        base_url=server.base_url, transport=SyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        pair = login(http, "writer")
        http.auth = fresh_auth(server.base_url, http, pair["refresh_token"])
        before = outcomes(server.management_url)
        faults.plan = [("before", BEFORE_THE_SERVICE[fault])] * 2
        assert http.get("/auth/me").status_code == 200
        assert (faults.sent, faults.reached) == (3, 1)
        assert delta(before, outcomes(server.management_url)) == {"rotated": 1}


async def test_every_attempt_lost_keeps_the_session(shared_latchkey, login) -> None:
    """Three answers lost in a row (retries=2): the fault reaches the caller and the auth
    keeps its tokens; the next request sends the same token once more, within the window,
    and gets the successor the first attempt was issued."""
    server = shared_latchkey.server
    faults = Faults()
    with server.client() as plain:
        pair = login(plain, "writer")
    async with httpx.AsyncClient(
        base_url=server.base_url, transport=AsyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        http.auth = auth = fresh_auth(server.base_url, http, pair["refresh_token"])
        tokens = auth.tokens
        before = outcomes(server.management_url)
        faults.plan = [("after", AFTER_THE_SERVICE["read timeout"])] * 3
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/auth/me")
        assert auth.tokens is tokens
        assert (faults.sent, faults.reached) == (3, 3)
        assert (await http.get("/auth/me")).status_code == 200
        assert delta(before, outcomes(server.management_url)) == {"rotated": 1, "grace": 3}


def test_a_503_is_returned_not_retried(shared_latchkey, login) -> None:
    """The service's own 503 (its database is away) raises RefreshFailed with retry_after at
    once, and the tokens stay for the next request."""
    server = shared_latchkey.server
    faults = Faults()

    def service_unavailable(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        return httpx.Response(
            503,
            json={"error": "temporarily_unavailable", "error_description": "Try again shortly."},
            headers={"Retry-After": "1"},
            request=request,
        )

    with httpx.Client(
        base_url=server.base_url, transport=SyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        pair = login(http, "writer")
        http.auth = auth = fresh_auth(server.base_url, http, pair["refresh_token"])
        faults.plan = [("after", service_unavailable)]
        with pytest.raises(RefreshFailed) as failed:
            http.get("/auth/me")
        assert (failed.value.status_code, failed.value.retry_after) == (503, 1)
        assert not failed.value.permanent
        assert faults.sent == 1
        assert http.get("/auth/me").status_code == 200
        assert auth.tokens.refresh_token != pair["refresh_token"]


def test_no_retry_once_the_window_is_spent(shared_latchkey, login) -> None:
    """A retry starts only within retry_for seconds of the first attempt (by the auth's
    clock): past it, the fault reaches the caller without another attempt."""
    server = shared_latchkey.server
    faults = Faults()
    now = [1_000.0]

    def slow_timeout(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        now[0] += 5.0  # the attempt took 5 s by the auth's clock
        raise httpx.ReadTimeout("timed out", request=request)

    with httpx.Client(
        base_url=server.base_url, transport=SyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        pair = login(http, "writer")
        http.auth = fresh_auth(
            server.base_url, http, pair["refresh_token"], retry_for=8.0, clock=lambda: now[0]
        )
        faults.plan = [("after", slow_timeout)] * 2
        with pytest.raises(httpx.ReadTimeout):
            http.get("/auth/me")
        assert faults.sent == 2  # the first at 0 s, one retry at 5 s; none at 10 s


def test_retries_zero_sends_once(shared_latchkey, login) -> None:
    """retries=0: a lost answer reaches the caller after one attempt."""
    server = shared_latchkey.server
    faults = Faults()
    with httpx.Client(
        base_url=server.base_url, transport=SyncFaultTransport(faults), trust_env=False, timeout=30
    ) as http:
        pair = login(http, "writer")
        http.auth = fresh_auth(server.base_url, http, pair["refresh_token"], retries=0)
        faults.plan = [("after", AFTER_THE_SERVICE["502"])]
        with pytest.raises(RefreshFailed) as failed:
            http.get("/auth/me")
        assert failed.value.status_code == 502 and not failed.value.permanent
        assert faults.sent == 1


@pytest.mark.parametrize(
    "options",
    [
        {"retries": -1},
        {"retries": 1.5},
        {"retries": True},
        {"retry_backoff": -1},
        {"retry_for": -0.1},
    ],
)
def test_bad_retry_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LatchkeyAuth("http://auth.test", refresh_token="lkrt.x", **options)
