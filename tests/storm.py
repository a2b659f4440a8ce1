"""Refresh storms for the fault tests: chains of refreshes that retry a lost answer with the
same token, and the count every fault case ends with (docs/guarantees.md):

    sessions lost 0, forks 0, acknowledged rotations lost 0

- a **fork**: one refresh token that was answered with two different successors;
- an **acknowledged rotation lost**: the newest token a client received (a 200) is not
  accepted later, while its session is live — the database forgot a rotation it confirmed;
- a **session lost**: that token is refused because the session has ended (revoked).

Storms stop by causality (a number of acknowledged rotations per chain, or an event), never
after a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

SOCKET_TIMEOUT = 30.0
SETTLE_BOUND = 30.0  # seconds a settling refresh may retry while the service comes back
_RETRYABLE = (httpx.TransportError,)


@dataclass(frozen=True)
class Count:
    sessions_lost: int
    forks: int
    rotations_lost: int

    def __str__(self) -> str:
        return (
            f"sessions lost {self.sessions_lost}, forks {self.forks}, "
            f"acknowledged rotations lost {self.rotations_lost}"
        )


ZERO = Count(0, 0, 0)


@dataclass
class Ledger:
    """What the clients saw: per chain its newest acknowledged pair, and every successor
    each presented refresh token was answered with."""

    acknowledged: dict[int, dict[str, Any]] = field(default_factory=dict)
    issued: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    rotations: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    attempts: int = 0
    lost_answers: int = 0  # attempts with no usable answer (timeout, reset, 5xx), then retried

    def answered(self, chain: int, presented: str, pair: dict[str, Any]) -> None:
        self.issued[presented].add(pair["refresh_token"])
        self.acknowledged[chain] = pair
        self.rotations[chain] += 1

    def forks(self) -> int:
        return sum(1 for successors in self.issued.values() if len(successors) > 1)

    async def count(self, client: httpx.AsyncClient) -> Count:
        """Present every chain's acknowledged token once more (waiting out a 503 or a
        dropped connection for up to SETTLE_BOUND s) and count what was lost."""
        lost_sessions = lost_rotations = 0
        for _, pair in sorted(self.acknowledged.items()):
            response = await _settled(client, pair["refresh_token"])
            if response.status_code == 200:
                self.issued[pair["refresh_token"]].add(response.json()["refresh_token"])
                continue
            sessions = await client.get(
                "/auth/sessions", headers={"Authorization": f"Bearer {pair['access_token']}"}
            )
            if sessions.status_code == 200:
                lost_rotations += 1  # the session lives, but not at this token
            else:
                lost_sessions += 1
        return Count(lost_sessions, self.forks(), lost_rotations)


async def _settled(client: httpx.AsyncClient, token: str) -> httpx.Response:
    deadline = time.monotonic() + SETTLE_BOUND
    while True:
        try:
            response = await client.post("/auth/refresh", json={"refresh_token": token})
            if response.status_code != 503:
                return response
        except _RETRYABLE:
            pass
        assert time.monotonic() < deadline, "the service did not answer a refresh in time"
        await asyncio.sleep(0.1)


async def refresh_with_retries(
    client: httpx.AsyncClient,
    token: str,
    ledger: Ledger,
    *,
    first_timeout: float | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Refresh ``token`` as a retrying mobile client does: a timeout, a dropped connection
    or a 5xx is retried with the same token; the first attempt may have a short timeout.
    The new pair, or None when refused (401/400) or when ``give_up()`` says so."""
    attempt = 0
    while not give_up():
        timeout = first_timeout if attempt == 0 and first_timeout is not None else 30.0
        attempt += 1
        ledger.attempts += 1
        try:
            response = await client.post(
                "/auth/refresh", json={"refresh_token": token}, timeout=timeout
            )
        except _RETRYABLE:
            ledger.lost_answers += 1
            await asyncio.sleep(0.05)
            continue
        if response.status_code >= 500:
            ledger.lost_answers += 1
            await asyncio.sleep(0.05)
            continue
        if response.status_code != 200:
            return None
        pair: dict[str, Any] = response.json()
        return pair
    return None


async def run_chain(
    client: httpx.AsyncClient,
    chain: int,
    pair: dict[str, Any],
    ledger: Ledger,
    *,
    rotations: int,
    first_timeout: float | None = None,
    give_up: Callable[[], bool] = lambda: False,
    refused: list[str] | None = None,
) -> None:
    """Rotate one chain ``rotations`` times (or until ``give_up()``), recording each answer."""
    ledger.acknowledged[chain] = pair
    # Every other refresh starts with a short timeout: its answer is often lost after the
    # service has rotated, and the retry is the grace case; or it arrives late, a straggler.
    for n in range(rotations):
        token = ledger.acknowledged[chain]["refresh_token"]
        short = first_timeout if n % 2 == 0 else None
        new = await refresh_with_retries(
            client, token, ledger, first_timeout=short, give_up=give_up
        )
        if new is None:
            if not give_up() and refused is not None:
                refused.append(f"chain {chain}: refused at rotation {n}")
            return
        ledger.answered(chain, token, new)


class HeldBackRequest:
    """``POST /auth/refresh`` sent over a raw socket but for the body's last byte, which
    :meth:`finish` sends later; the server has the request and waits for the rest."""

    def __init__(self, port: int, refresh_token: str) -> None:
        body = json.dumps({"refresh_token": refresh_token}).encode()
        head = (
            "POST /auth/refresh HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        self._last = body[-1:]
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT)
        self._sock.sendall(head + body[:-1])

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Send the last byte; the status and JSON body of the answer."""
        self._sock.sendall(self._last)
        chunks = []
        while chunk := self._sock.recv(65536):
            chunks.append(chunk)
        self._sock.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body)
