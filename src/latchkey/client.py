"""An ``httpx.Auth`` for latchkey: bearer access tokens, refreshed in time, one refresh at a time.

    with httpx.Client(base_url="https://api.example.com") as client:
        client.auth = LatchkeyAuth.login(client, "https://auth.example.com", "alice", password)
        client.get("/notes")

The same object works with ``httpx.Client`` (threads) and ``httpx.AsyncClient`` (tasks).
Refreshes go to ``POST {base_url}/auth/refresh`` through the ``client`` given at construction,
past its auth (so never through this one again: no recursion), or through a short-lived
client of their own. See docs/client.md.

Every decision (when to refresh, what a 401 means, which tokens to keep) is made once, in
flows that do no I/O: generators that yield what they need done and get its result back, as
``httpx.Auth.auth_flow`` does. Two thin drivers, one for threads and one for tasks, send the
requests, read the answers and hold the refresh lock.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import anyio
import httpx

from .core.errors import LatchkeyError

__all__ = ["LatchkeyAuth", "LoginFailed", "OnRefresh", "RefreshFailed", "Tokens"]

log = logging.getLogger("latchkey.client")

_HIDDEN = "'**********'"
# One challenge of a WWW-Authenticate value names the Bearer scheme (RFC 6750 §3, RFC 9110 §11.6.1).
_BEARER_CHALLENGE = re.compile(r"(?:^|,)\s*bearer(?=[\s,]|$)", re.IGNORECASE)
_STEP_UP = re.compile(r'error="?insufficient_user_authentication', re.IGNORECASE)
# A refused refresh with these statuses cannot succeed later: the caller must log in again.
_PERMANENT = frozenset({400, 401, 403})
_NO_AUTH = httpx.Auth()  # sends a request as it is: logins and refreshes never pass this auth
# A refresh whose answer is lost is sent again with the same refresh token: the service answers
# a repeat within its grace window with the successor it already issued, and refuses a late
# first attempt without ending the session (docs/sessions.md). Lost: no answer at all (a
# timeout, a reset or refused connection), or a 5xx from something between the client and the
# service. The service's own 503 ("temporarily_unavailable", Retry-After) is returned as is.
_LOST_STATUS = frozenset({500, 502, 504})
_LOST = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, repr=False)
class Tokens:
    """The tokens an auth holds. Times are Unix seconds by the auth's clock; ``None`` when
    unknown. The ``repr`` hides the tokens themselves."""

    refresh_token: str
    access_token: str | None = None
    expires_at: float | None = None  # the access token's expiry
    refresh_expires_at: float | None = None  # the session ends if not refreshed by then

    @classmethod
    def from_pair(cls, pair: Mapping[str, Any], received_at: float) -> Tokens:
        """Tokens from a token-pair body; ``received_at`` is the clock just before the request
        was sent, so expiries are never later than the server's."""
        access, refresh = pair.get("access_token"), pair.get("refresh_token")
        expires_in = _seconds(pair.get("expires_in"))
        refresh_expires_in = _seconds(pair.get("refresh_expires_in"))
        if (
            not isinstance(access, str)
            or not access
            or not isinstance(refresh, str)
            or not refresh
            or str(pair.get("token_type", "Bearer")).lower() != "bearer"
            or expires_in is None
        ):
            raise ValueError("not a token pair")
        return cls(
            refresh_token=refresh,
            access_token=access,
            expires_at=received_at + expires_in,
            refresh_expires_at=(
                None if refresh_expires_in is None else received_at + refresh_expires_in
            ),
        )

    def __repr__(self) -> str:
        access = "None" if self.access_token is None else _HIDDEN
        return (
            f"Tokens(refresh_token={_HIDDEN}, access_token={access}, "
            f"expires_at={self.expires_at!r}, refresh_expires_at={self.refresh_expires_at!r})"
        )


def _seconds(value: object) -> float | None:
    """A positive JSON number of seconds, else ``None``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


OnRefresh: TypeAlias = Callable[[Tokens], object]
"""Called with every new :class:`Tokens` (after login and after each refresh), under the
refresh lock, so calls never overlap and arrive in order. With an ``AsyncClient`` it may be
``async``; with a ``Client`` it must not be."""


class _Refused(LatchkeyError):
    """The service answered a login or refresh with an error."""

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status_code: int,
        retry_after: float | None = None,
    ) -> None:
        self.error = error
        self.status_code = status_code
        self.retry_after = retry_after  # seconds, when the answer had a Retry-After
        super().__init__(description or f"latchkey answered {status_code} {error}")

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error!r}, status_code={self.status_code})"


class LoginFailed(_Refused):
    """``/auth/login`` refused: ``invalid_grant`` (wrong username or password),
    ``account_disabled``, ``too_many_requests`` (429, with :attr:`retry_after`), …"""


class RefreshFailed(_Refused):
    """``/auth/refresh`` refused. ``invalid_grant`` (session revoked, expired or reused)
    and ``account_disabled`` are :attr:`permanent`: the auth then refuses every request
    without asking the service again, and the user must log in anew. Other failures
    (``server_error``, ``temporarily_unavailable`` with :attr:`retry_after`) leave the
    tokens as they were: the next request tries again."""

    @property
    def permanent(self) -> bool:
        return self.status_code in _PERMANENT


@dataclass(frozen=True)
class _Retry:
    retries: int
    backoff: float
    window: float


@dataclass
class _Attempts:
    """When one refresh is sent again after a lost answer: at most ``retries`` more times,
    after ``backoff`` seconds doubling each time, and only while the next attempt starts
    within ``window`` seconds of the first."""

    retries: int
    backoff: float
    window: float
    started: float
    made: int = 1

    def delay(self, now: float) -> float | None:
        """The wait before the next attempt; None when there is none."""
        if self.made > self.retries:
            return None
        delay: float = self.backoff * 2.0 ** (self.made - 1)
        if now + delay - self.started > self.window:
            return None
        self.made += 1
        return delay


@dataclass(frozen=True)
class _State:
    """The tokens and when to refresh them: one object, swapped whole, read without a lock."""

    tokens: Tokens
    refresh_at: float


class LatchkeyAuth(httpx.Auth):
    """Sends ``Authorization: Bearer <access token>`` and keeps the token fresh.

    - Refreshes before sending once the access token is within ``leeway`` seconds of its
      expiry (at most half its lifetime), or first thing when there is no access token.
    - On a 401 with a ``WWW-Authenticate: Bearer`` challenge, refreshes once and sends the
      request once more; the answer to that is returned whatever it is. A 401
      ``insufficient_user_authentication`` (the operation needs a more recent login, RFC
      9470) is returned as it is: a refresh would not help.
    - Any other answer is returned as it is: a 503 (the API's guard cannot get its keys
      now, ``Retry-After`` says when to try again) keeps the session and the tokens, and
      causes no refresh.
    - One refresh at a time: requests that find a refresh under way wait for it and use its
      result (a ``threading.Lock`` for ``Client``, an ``anyio.Lock`` for ``AsyncClient``).
    - A refresh whose answer is lost (a timeout, a reset or refused connection, a 500, 502
      or 504) is sent again with the same refresh token, at most ``retries`` more times,
      after ``retry_backoff`` seconds doubling each time, while the next attempt starts within
      ``retry_for`` seconds of the first: the service answers it with the successor it may
      already have issued. A 503 is not retried: it raises :class:`RefreshFailed` with
      ``retry_after``. Keep ``retry_for`` below the service's ``LATCHKEY_REFRESH_GRACE``.
    - ``on_refresh`` gets each new :class:`Tokens`, to persist the rotated refresh token.
    - A refused refresh raises :class:`RefreshFailed`.

    ``client`` sends the refresh requests, past its own auth; it may be the very client this
    auth is attached to. Without one, each refresh uses a short-lived client.
    """

    def __init__(
        self,
        base_url: str | httpx.URL,
        *,
        refresh_token: str,
        access_token: str | None = None,
        expires_at: float | None = None,
        on_refresh: OnRefresh | None = None,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        client: httpx.Client | httpx.AsyncClient | None = None,
        retries: int = 2,
        retry_backoff: float = 0.25,
        retry_for: float = 8.0,
    ) -> None:
        if not refresh_token:
            raise ValueError("refresh_token is required")
        if not leeway >= 0:
            raise ValueError("leeway must be a number of seconds, 0 or more")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("retries must be a whole number, 0 or more")
        if not retry_backoff >= 0 or not retry_for >= 0:
            raise ValueError("retry_backoff and retry_for must be numbers of seconds, 0 or more")
        self._retry = _Retry(retries, float(retry_backoff), float(retry_for))
        self.refresh_url = _endpoint(base_url, "/auth/refresh")
        self._on_refresh = on_refresh
        self._leeway = float(leeway)
        self._clock = clock
        self._client = client
        tokens = Tokens(refresh_token, access_token, expires_at)
        if access_token is None:
            refresh_at = -math.inf  # nothing to send yet: refresh first
        elif expires_at is None:
            refresh_at = math.inf  # unknown expiry: rely on the server's 401
        else:
            refresh_at = expires_at - self._leeway
        self._state = _State(tokens, refresh_at)
        self._failure: RefreshFailed | None = None
        self._thread_lock = threading.Lock()
        self._task_lock = anyio.Lock()

    # --- logging in ------------------------------------------------------------------------

    @classmethod
    def login(
        cls,
        client: httpx.Client,
        base_url: str | httpx.URL,
        username: str,
        password: str,
        *,
        on_refresh: OnRefresh | None = None,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        retries: int = 2,
        retry_backoff: float = 0.25,
        retry_for: float = 8.0,
    ) -> LatchkeyAuth:
        """Log in with ``POST {base_url}/auth/login`` through ``client``, which then also
        sends the refreshes. ``on_refresh`` is called with the first tokens too; ``retries``,
        ``retry_backoff`` and ``retry_for`` are as for the constructor. Raises
        :class:`LoginFailed`."""
        tokens = _run(_login_flow(base_url, username, password, clock), _poster(client))
        retry = _Retry(retries, retry_backoff, retry_for)
        auth = cls._from_tokens(base_url, tokens, on_refresh, leeway, clock, client, retry)
        auth._notify(tokens)
        return auth

    @classmethod
    async def alogin(
        cls,
        client: httpx.AsyncClient,
        base_url: str | httpx.URL,
        username: str,
        password: str,
        *,
        on_refresh: OnRefresh | None = None,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        retries: int = 2,
        retry_backoff: float = 0.25,
        retry_for: float = 8.0,
    ) -> LatchkeyAuth:
        """:meth:`login` for an ``AsyncClient``; ``on_refresh`` may be async."""
        flow = _login_flow(base_url, username, password, clock)
        tokens = await _arun(flow, _aposter(client))
        retry = _Retry(retries, retry_backoff, retry_for)
        auth = cls._from_tokens(base_url, tokens, on_refresh, leeway, clock, client, retry)
        await auth._anotify(tokens)
        return auth

    @classmethod
    def _from_tokens(
        cls,
        base_url: str | httpx.URL,
        tokens: Tokens,
        on_refresh: OnRefresh | None,
        leeway: float,
        clock: Callable[[], float],
        client: httpx.Client | httpx.AsyncClient,
        retry: _Retry,
    ) -> LatchkeyAuth:
        auth = cls(
            base_url,
            refresh_token=tokens.refresh_token,
            on_refresh=on_refresh,
            leeway=leeway,
            clock=clock,
            client=client,
            retries=retry.retries,
            retry_backoff=retry.backoff,
            retry_for=retry.window,
        )
        auth._state = auth._fresh_state(tokens)
        return auth

    # --- state -----------------------------------------------------------------------------

    @property
    def tokens(self) -> Tokens:
        """The tokens in use now."""
        return self._state.tokens

    def __repr__(self) -> str:
        return f"LatchkeyAuth({str(self.refresh_url)!r}, tokens={self._state.tokens!r})"

    def _fresh_state(self, tokens: Tokens) -> _State:
        """Refresh ``leeway`` seconds before expiry, but never in the first half of the
        token's life (a leeway longer than the lifetime would refresh on every request)."""
        assert tokens.expires_at is not None
        lifetime = tokens.expires_at - self._clock()
        return _State(tokens, tokens.expires_at - min(self._leeway, lifetime / 2))

    def _due(self, state: _State) -> bool:
        return self._clock() >= state.refresh_at

    def _raise_if_failed(self) -> None:
        failure = self._failure
        if failure is not None:
            raise RefreshFailed(failure.error, failure.description, status_code=failure.status_code)

    # --- the flow, without I/O -------------------------------------------------------------
    # Every decision is made here, once, for threads and tasks alike. The flows yield what
    # they need done (a request to send, a refresh, a POST) and get its result back; the
    # drivers below do the I/O, sync or async, and hold the refresh lock.

    def _auth_flow(self, request: httpx.Request) -> Generator[_Step, Any, None]:
        """Authorize ``request``: refresh first when due, and once more on a bearer
        challenge. Yields an ``httpx.Request`` (answered with its ``httpx.Response``) or a
        :class:`_Refresh` (answered with the state to use)."""
        self._raise_if_failed()
        state = self._state
        if self._due(state):
            state = yield _Refresh(state)
        response = yield _authorize(request, state)
        if not _challenged(response):
            return
        # Read the 401 first, to hand its connection back to the pool before refreshing.
        state = yield _Refresh(state, drain=response)
        if _replayable(request):
            yield _authorize(request, state)

    def _refresh_flow(self, seen: _State) -> Generator[_Post | _Wait, Any, _State | None]:
        """Refresh, under the refresh lock, unless another refresh happened since ``seen``
        was read: the new state, or ``None`` when the current one is to be used. A lost
        answer is sent again with the same refresh token (see the class)."""
        self._raise_if_failed()
        if self._state is not seen:
            return None  # someone else refreshed while we waited
        started = self._clock()
        retry = self._retry
        attempts = _Attempts(retry.retries, retry.backoff, retry.window, started)
        body = {"refresh_token": seen.tokens.refresh_token}
        while True:
            outcome: httpx.Response | Exception = yield _Post(self.refresh_url, body, lost_ok=True)
            lost = isinstance(outcome, Exception) or outcome.status_code in _LOST_STATUS
            delay = attempts.delay(self._clock()) if lost else None
            if delay is None:
                if isinstance(outcome, Exception):
                    raise outcome
                return self._accept(outcome, started)
            what = outcome.status_code if isinstance(outcome, httpx.Response) else outcome
            log.info("refresh answer lost (%r); same refresh token again in %.2f s", what, delay)
            yield _Wait(delay)

    def _accept(self, response: httpx.Response, started: float) -> _State:
        """Take the new tokens of a refresh response, or raise :class:`RefreshFailed`."""
        if response.status_code == 200:
            try:
                tokens = Tokens.from_pair(response.json(), started)
            except ValueError:
                raise RefreshFailed(
                    "invalid_response", "The refresh response is not a token pair.", status_code=200
                ) from None
            # First the new state, then the callback: the server has rotated, so the old
            # refresh token must not be presented again, whatever the callback does.
            self._state = state = self._fresh_state(tokens)
            log.debug("access token refreshed")
            return state
        error, description = _oauth_error(response)
        failure = RefreshFailed(
            error,
            description,
            status_code=response.status_code,
            retry_after=_retry_after(response),
        )
        if failure.permanent:
            self._failure = failure
        log.info("token refresh refused: %s %s", response.status_code, error)
        raise failure

    # --- the drivers: threads --------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._auth_flow(request)
        answer: Any = None
        while True:
            try:
                step = flow.send(answer)
            except StopIteration:
                return
            if isinstance(step, httpx.Request):
                answer = yield step
            else:
                if step.drain is not None:
                    step.drain.read()
                answer = self._refresh(step.seen)

    def _refresh(self, seen: _State) -> _State:
        """Refresh unless another thread did since ``seen`` was read; the current state."""
        if _is_async_callable(self._on_refresh):
            raise TypeError("an async on_refresh needs an httpx.AsyncClient")
        if isinstance(self._client, httpx.AsyncClient):
            raise TypeError("this LatchkeyAuth refreshes through an httpx.AsyncClient")
        with self._thread_lock:
            if self._client is None:
                with httpx.Client() as client:
                    state = _run(self._refresh_flow(seen), _poster(client))
            else:
                state = _run(self._refresh_flow(seen), _poster(self._client))
            if state is None:
                return self._state
            self._notify(state.tokens)
            return state

    def _notify(self, tokens: Tokens) -> None:
        if self._on_refresh is None:
            return
        if _is_async_callable(self._on_refresh):
            raise TypeError("an async on_refresh needs an httpx.AsyncClient")
        result = self._on_refresh(tokens)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError("on_refresh returned an awaitable: use it with an httpx.AsyncClient")

    # --- the drivers: tasks ----------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self._auth_flow(request)
        answer: Any = None
        while True:
            try:
                step = flow.send(answer)
            except StopIteration:
                return
            if isinstance(step, httpx.Request):
                answer = yield step
            else:
                if step.drain is not None:
                    await step.drain.aread()
                answer = await self._arefresh(step.seen)

    async def _arefresh(self, seen: _State) -> _State:
        """:meth:`_refresh` for tasks."""
        if isinstance(self._client, httpx.Client):
            raise TypeError("this LatchkeyAuth refreshes through an httpx.Client")
        async with self._task_lock:
            if self._client is None:
                async with httpx.AsyncClient() as client:
                    state = await _arun(self._refresh_flow(seen), _aposter(client))
            else:
                state = await _arun(self._refresh_flow(seen), _aposter(self._client))
            if state is None:
                return self._state
            await self._anotify(state.tokens)
            return state

    async def _anotify(self, tokens: Tokens) -> None:
        if self._on_refresh is None:
            return
        result = self._on_refresh(tokens)
        if inspect.isawaitable(result):
            await result


# --- the steps a flow yields, and the drivers' helpers ----------------------------------------


@dataclass(frozen=True)
class _Refresh:
    """Refresh unless the state changed since ``seen``; first read ``drain``, if given."""

    seen: _State
    drain: httpx.Response | None = None


_Step: TypeAlias = httpx.Request | _Refresh


@dataclass(frozen=True)
class _Post:
    """POST ``body`` as JSON to ``url``, past any auth (logins and refreshes). With
    ``lost_ok``, a lost answer (:data:`_LOST`) is handed back to the flow, not raised."""

    url: httpx.URL
    body: Mapping[str, str]
    lost_ok: bool = False


@dataclass(frozen=True)
class _Wait:
    """Sleep ``seconds`` (a thread sleeps, a task awaits)."""

    seconds: float


_T = TypeVar("_T")


def _login_flow(
    base_url: str | httpx.URL, username: str, password: str, clock: Callable[[], float]
) -> Generator[_Post, httpx.Response, Tokens]:
    started = clock()
    body = {"username": username, "password": password}
    response = yield _Post(_endpoint(base_url, "/auth/login"), body)
    return _login_tokens(response, started)


def _run(flow: Generator[_Post | _Wait, Any, _T], post: Callable[[_Post], httpx.Response]) -> _T:
    """Drive a login or refresh flow to its result, sending each POST with ``post``."""
    answer: Any = None
    while True:
        try:
            step = flow.send(answer)
        except StopIteration as done:
            result: _T = done.value
            return result
        if isinstance(step, _Wait):
            time.sleep(step.seconds)
            answer = None
            continue
        try:
            answer = post(step)
        except _LOST as exc:
            if not step.lost_ok:
                raise
            answer = exc


async def _arun(
    flow: Generator[_Post | _Wait, Any, _T],
    post: Callable[[_Post], Awaitable[httpx.Response]],
) -> _T:
    """:func:`_run` for tasks."""
    answer: Any = None
    while True:
        try:
            step = flow.send(answer)
        except StopIteration as done:
            result: _T = done.value
            return result
        if isinstance(step, _Wait):
            await anyio.sleep(step.seconds)
            answer = None
            continue
        try:
            answer = await post(step)
        except _LOST as exc:
            if not step.lost_ok:
                raise
            answer = exc


def _poster(client: httpx.Client) -> Callable[[_Post], httpx.Response]:
    return lambda step: client.post(step.url, json=dict(step.body), auth=_NO_AUTH)


def _aposter(client: httpx.AsyncClient) -> Callable[[_Post], Awaitable[httpx.Response]]:
    return lambda step: client.post(step.url, json=dict(step.body), auth=_NO_AUTH)


def _endpoint(base_url: str | httpx.URL, path: str) -> httpx.URL:
    return httpx.URL(str(base_url).rstrip("/") + path)


def _oauth_error(response: httpx.Response) -> tuple[str, str | None]:
    """The ``error`` and ``error_description`` of an error response (docs/design.md §4)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return body["error"], description if isinstance(description, str) else None
    return ("server_error" if response.status_code >= 500 else "invalid_response"), None


def _login_tokens(response: httpx.Response, started: float) -> Tokens:
    if response.status_code == 200:
        try:
            return Tokens.from_pair(response.json(), started)
        except ValueError:
            raise LoginFailed(
                "invalid_response", "The login response is not a token pair.", status_code=200
            ) from None
    error, description = _oauth_error(response)
    raise LoginFailed(
        error, description, status_code=response.status_code, retry_after=_retry_after(response)
    )


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3, the delay form); ``None`` otherwise."""
    value = response.headers.get("retry-after")
    return float(value) if value and value.isdigit() else None


def _authorize(request: httpx.Request, state: _State) -> httpx.Request:
    assert state.tokens.access_token is not None  # a state without one is always due
    request.headers["Authorization"] = f"Bearer {state.tokens.access_token}"
    return request


def _challenged(response: httpx.Response) -> bool:
    """A 401 that asks for a bearer token: a fresh access token may be accepted. Not one that
    asks for a more recent login (RFC 9470 §3): a refresh keeps the session's ``auth_time``,
    so only the user's password helps there; the 401 is returned as it is."""
    challenges = response.headers.get_list("www-authenticate")
    return (
        response.status_code == 401
        and any(_BEARER_CHALLENGE.search(value) for value in challenges)
        and not any(_STEP_UP.search(value) for value in challenges)
    )


def _replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again: it is in memory (bytes, JSON, form), not a stream
    that the first attempt consumed."""
    try:
        request.content  # noqa: B018
    except httpx.RequestNotRead:
        return False
    return True


def _is_async_callable(function: object) -> bool:
    # A function declared ``async def``, or an object whose ``__call__`` is.
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        type(function).__call__
    )
