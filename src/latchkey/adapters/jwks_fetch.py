"""One GET of a JWKS URL, sync or async, bounded in time and size, failures classified.

Both fetchers return the parsed key set and the response's freshness lifetime, or raise
:class:`FetchFailed` whose ``kind`` is one of a fixed few (a metric label) and whose
``detail`` is for the log. Nothing from the response body ever reaches a log line.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..core.errors import ConfigurationError
from ..core.keysets import StaticKeySet

MAX_JWKS_BYTES = 256 * 1024
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)
_HEADERS = {"Accept": "application/json"}

Fetched = tuple[StaticKeySet, float | None]  # the keys, their lifetime (None: not said)

TIMEOUT = "timeout"
CONNECTION = "connection"
HTTP_STATUS = "http_status"
INVALID = "invalid_document"
KINDS = (TIMEOUT, CONNECTION, HTTP_STATUS, INVALID)


class FetchFailed(Exception):
    """A fetch that gave no usable key set; ``kind`` is one of :data:`KINDS`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def cache_lifetime(cache_control: str | None) -> float | None:
    """Seconds a response may be kept after RFC 9111 §5.2.2; ``None`` if not said."""
    if not cache_control:
        return None
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    return float(match[1]) if match else None


def redact(url: str) -> str:
    """The URL for a log line: no user, password, query or fragment (which may hold one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse(body: bytes, cache_control: str | None) -> Fetched:
    """The key set in a JWKS body (RFC 7517 §5) and its lifetime."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ConfigurationError("the JWKS is not a JSON object")
        keys = StaticKeySet.from_jwks(document)
    except (ValueError, RecursionError) as exc:
        raise FetchFailed(INVALID, "the answer is not JSON") from exc
    except ConfigurationError as exc:
        raise FetchFailed(INVALID, exc.description) from exc
    return keys, cache_lifetime(cache_control)


def new_client(timeout: float) -> httpx.Client:
    return httpx.Client(timeout=timeout, follow_redirects=False, headers=_HEADERS)


def new_async_client(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers=_HEADERS)


def fetch(client: httpx.Client, url: str, timeout: float) -> Fetched:
    """GET ``url`` in at most about ``timeout`` seconds (each read is bounded too)."""
    deadline = time.monotonic() + timeout
    try:
        with client.stream("GET", url) as response:
            _check_status(response)
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                _check_size(body)
                if time.monotonic() > deadline:
                    raise FetchFailed(TIMEOUT, f"no complete answer within {timeout:g} s")
            cache_control = response.headers.get("cache-control")
    except httpx.HTTPError as exc:
        raise _classify(exc, timeout) from exc
    return parse(bytes(body), cache_control)


async def afetch(client: httpx.AsyncClient, url: str, timeout: float) -> Fetched:
    """:func:`fetch` for an event loop: the whole exchange bounded by ``timeout``."""
    try:
        async with asyncio.timeout(timeout), client.stream("GET", url) as response:
            _check_status(response)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                _check_size(body)
            cache_control = response.headers.get("cache-control")
    except TimeoutError as exc:
        raise FetchFailed(TIMEOUT, f"no complete answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise _classify(exc, timeout) from exc
    return parse(bytes(body), cache_control)


def _check_status(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise FetchFailed(HTTP_STATUS, f"HTTP {response.status_code}")


def _check_size(body: bytearray) -> None:
    if len(body) > MAX_JWKS_BYTES:
        raise FetchFailed(INVALID, f"the answer is larger than {MAX_JWKS_BYTES} bytes")


def _classify(exc: httpx.HTTPError, timeout: float) -> FetchFailed:
    if isinstance(exc, httpx.TimeoutException):
        return FetchFailed(TIMEOUT, f"no answer within {timeout:g} s")
    return FetchFailed(CONNECTION, type(exc).__name__ + (f": {exc}" if str(exc) else ""))
