"""Faults (issue 3 §5): PostgreSQL stopped mid-traffic, ``kill -9`` of a server during a
refresh storm, Redis gone while two instances serve.

Each test starts its own throwaway PostgreSQL (and Redis) so that it may stop them. Latency
bounds here are requirements of the issue (an answer within the 2 s database timeout, plus
a margin for this 2-core machine), not performance claims.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
from cluster_support import (
    Cluster,
    Instance,
    MakeCluster,
    ThrowawayPostgres,
    ThrowawayRedis,
    alogin,
    bearer,
    check_logout_reaches,
    refresh,
    wait_for_status,
)

from latchkey.guard.denylist import RedisDenyList
from storm import ZERO, Ledger

pytestmark = pytest.mark.e2e

ANSWER_BOUND = 2.0  # the longest any request may take (docs/deployment.md; DB_TIMEOUT 1.5 s)
RECOVERY_BOUND = 10.0  # requests succeed again within this many seconds of the restart
GRACE = "30"  # LATCHKEY_REFRESH_GRACE of the fault tests: a restart fits in the window
REVOCATION_CHANNEL = "latchkey:revoked"  # RedisRevocations' default channel


@dataclass
class Call:
    kind: str
    started: float
    ended: float
    status: int  # -1: no HTTP answer at all (connection dropped, client timeout)
    retry_after: str | None
    detail: str

    @property
    def latency(self) -> float:
        return self.ended - self.started


@dataclass
class Recorder:
    """Every request of a traffic stream with its timing and outcome."""

    calls: list[Call] = field(default_factory=list)

    async def call(
        self, kind: str, send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await send()
        except httpx.TransportError as exc:
            self.calls.append(Call(kind, started, time.monotonic(), -1, None, repr(exc)))
            return None
        self.calls.append(
            Call(
                kind,
                started,
                time.monotonic(),
                response.status_code,
                response.headers.get("retry-after"),
                response.text[:200],
            )
        )
        return response

    def between(self, start: float, end: float) -> list[Call]:
        """Calls sent at or after ``start`` and answered at or before ``end``."""
        return [c for c in self.calls if c.started >= start and c.ended <= end]

    def unexpected(self, allowed: set[int]) -> list[Call]:
        return [c for c in self.calls if c.status not in allowed]

    def summary(self, start: float, end: float) -> str:
        """Per kind: status counts and the slowest latency of the calls sent in [start, end)."""
        parts = []
        for kind in sorted({c.kind for c in self.calls}):
            sent = [c for c in self.calls if c.kind == kind and start <= c.started < end]
            counts = Counter(c.status for c in sent)
            slowest = max((c.latency for c in sent), default=0.0)
            parts.append(f"{kind}: {dict(counts)} slowest {slowest:.2f} s")
        return "; ".join(parts)

    def slowest(self) -> Call:
        return max(self.calls, key=lambda c: c.latency)


async def readyz(client: httpx.AsyncClient) -> httpx.Response | None:
    """GET /readyz, or None when this version has no such route (404)."""
    response = await client.get("/readyz")
    return None if response.status_code == 404 else response


class Traffic:
    """A background stream on one instance: two refresh chains, two /auth/me readers and a
    login loop, each recording every call; bounded by :meth:`stop` or 60 s."""

    def __init__(self, client: httpx.AsyncClient, pairs: list[dict[str, Any]], password: str):
        self.client = client
        self.recorder = Recorder()
        self.chains = {0: pairs[0]["refresh_token"], 1: pairs[1]["refresh_token"]}
        self.ledger = Ledger(acknowledged={0: pairs[0], 1: pairs[1]})
        self.reader_pair = pairs[2]
        self.login_body = {"username": "alice", "password": password}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _running(self, deadline: float) -> bool:
        return not self._stop.is_set() and time.monotonic() < deadline

    async def _refresher(self, n: int) -> None:
        deadline = time.monotonic() + 60
        while self._running(deadline):
            presented = self.chains[n]
            response = await self.recorder.call("refresh", partial(refresh, self.client, presented))
            if response is not None and response.status_code == 200:
                self.chains[n] = response.json()["refresh_token"]
                self.ledger.answered(n, presented, response.json())
            await asyncio.sleep(0.01)

    async def _reader(self) -> None:
        headers = bearer(self.reader_pair)
        deadline = time.monotonic() + 60
        while self._running(deadline):
            await self.recorder.call("me", lambda: self.client.get("/auth/me", headers=headers))
            await asyncio.sleep(0.01)

    async def _logger_in(self) -> None:
        deadline = time.monotonic() + 60
        while self._running(deadline):
            await self.recorder.call(
                "login", lambda: self.client.post("/auth/login", json=self.login_body)
            )
            await asyncio.sleep(0.02)

    def start(self) -> None:
        works = [self._refresher(0), self._refresher(1), self._reader(), self._reader()]
        self._tasks = [asyncio.create_task(work) for work in [*works, self._logger_in()]]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def recovered_since(self, moment: float) -> bool:
        """Every kind of request has had a 200 sent at or after ``moment``."""
        return all(
            any(c.kind == kind and c.status == 200 and c.started >= moment for c in self.calls)
            for kind in KINDS
        )

    @property
    def calls(self) -> list[Call]:
        return self.recorder.calls


KINDS = ("refresh", "me", "login")


@pytest.mark.parametrize(
    ("fault", "outage"),
    [
        pytest.param("stopped", 2.0, id="stopped"),
        # Hung: long enough for calls that wait for their timeout to end inside it.
        pytest.param("hung", 5.0, id="hung"),
    ],
)
async def test_postgres_fault_mid_traffic_gives_503_then_recovers(
    throwaway_postgres: ThrowawayPostgres, make_cluster: MakeCluster, fault: str, outage: float
) -> None:
    """With PostgreSQL stopped (fast shutdown) or hung (SIGSTOP) under a stream of refreshes,
    /auth/me and logins, every refresh and login is answered with a 503 with Retry-After within
    2 s (never a 500 or a hang), /auth/me goes on answering without the database, and service
    resumes by itself once PostgreSQL is back."""
    postgres = throwaway_postgres
    interrupt, restore = {
        "stopped": (postgres.stop, postgres.start),
        "hung": (postgres.pause, postgres.resume),
    }[fault]
    cluster = make_cluster(postgres.url, LATCHKEY_REFRESH_GRACE=GRACE)
    cluster.migrate()
    cluster.add_user("alice")
    (server,) = cluster.start(1)

    async with server.async_client(timeout=10) as client:
        pairs = [await alogin(client, "alice") for _ in range(3)]
        ready = await readyz(client)
        assert ready is None or ready.status_code == 200
        traffic = Traffic(client, pairs, cluster.password)
        traffic.start()
        restored = False
        try:
            await asyncio.sleep(0.5)
            interrupting = time.monotonic()
            await asyncio.to_thread(interrupt)
            down = time.monotonic()
            await asyncio.sleep(outage / 2)
            ready_down = await readyz(client)
            await asyncio.sleep(max(0.0, down + outage - time.monotonic()))
            restoring = time.monotonic()
            await asyncio.to_thread(restore)
            restored = True
            while (
                not traffic.recovered_since(restoring)
                and time.monotonic() - restoring < RECOVERY_BOUND
            ):
                await asyncio.sleep(0.05)
            recovered = time.monotonic()
        finally:
            if fault == "hung" and not restored:
                postgres.resume()  # so that the finalizers need not wait on a frozen server
            await traffic.stop()

        assert traffic.recovered_since(restoring), (
            f"not every kind of request succeeded within {RECOVERY_BOUND} s of the restore"
        )
        ready_up = await readyz(client)
        # Every chain goes on where the client left it (a rotation committed while its
        # answer was lost is the grace case, well inside the 30 s window).
        count = await traffic.ledger.count(client)
        assert count == ZERO, str(count)

    recorder = traffic.recorder
    summary = recorder.summary(interrupting, restoring)
    assert any(c.started < interrupting and c.status == 200 for c in recorder.calls)
    slowest = recorder.slowest()
    assert slowest.latency < ANSWER_BOUND, (
        f"slowest answer took {slowest.latency:.2f} s: {slowest}; during the outage: {summary}"
    )
    no_retry_after = [c for c in recorder.calls if c.status == 503 and not c.retry_after]
    assert not no_retry_after, f"503 without Retry-After: {no_retry_after[:5]}"
    during = recorder.between(down, restoring)
    for kind in KINDS:
        assert any(c.kind == kind for c in during), f"no {kind} answered in the outage; {summary}"
    # Refreshes and logins need the database: 503. /auth/me does not, once the process knows
    # the user's name (docs/sessions.md): it goes on answering from the token.
    not_503 = [c for c in during if c.status != 503 and c.kind != "me"]
    assert not not_503, f"answers other than 503 during the outage: {not_503[:5]}"
    me_not_200 = [c for c in during if c.kind == "me" and c.status != 200]
    assert not me_not_200, f"/auth/me failed during the outage: {me_not_200[:5]}"
    if ready_down is not None:
        assert ready_down.status_code == 503, ready_down.text
        assert ready_down.headers.get("retry-after")
    if ready_up is not None:
        assert ready_up.status_code == 200, ready_up.text
    # Last, so that a failure here says everything else held: no answer but 200 or 503.
    unexpected = recorder.unexpected({200, 503})
    assert not unexpected, f"{len(unexpected)} answers neither 200 nor 503: {unexpected[:5]}"
    print(
        f"{fault}: {len(recorder.calls)} requests, {len(during)} during the outage; slowest "
        f"{slowest.latency:.3f} s; recovered {recovered - restoring:.2f} s after the restore "
        f"began (interrupt took {down - interrupting:.2f} s)"
    )


def grace_replays(metrics_text: str) -> float:
    match = re.search(r'^latchkey_refreshes_total\{outcome="grace"\} (\S+)$', metrics_text, re.M)
    return float(match[1]) if match else 0.0


async def test_kill_9_during_a_refresh_storm_loses_no_acknowledged_rotation(
    throwaway_postgres: ThrowawayPostgres, make_cluster: MakeCluster
) -> None:
    """After a kill -9 amid 20 sequential refresh chains and a restart, every chain's last
    acknowledged refresh token still refreshes (directly or as the grace case) and no
    session has forked or been revoked."""
    chains = 20
    cluster = make_cluster(throwaway_postgres.url, LATCHKEY_REFRESH_GRACE=GRACE)
    cluster.migrate()
    cluster.add_user("alice")
    (server,) = cluster.start(1)

    async with server.async_client(timeout=10) as client:
        pairs = await asyncio.gather(*(alogin(client, "alice") for _ in range(chains)))
        acknowledged = [pair["refresh_token"] for pair in pairs]
        rotations = [0] * chains
        refused: list[str] = []
        every_chain_rotated = asyncio.Event()

        async def chain(n: int) -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    response = await refresh(client, acknowledged[n])
                except httpx.TransportError:
                    return  # the server is gone; what the client saw last is acknowledged[n]
                if response.status_code != 200:
                    refused.append(f"chain {n}: {response.status_code} {response.text}")
                    return
                acknowledged[n] = response.json()["refresh_token"]
                rotations[n] += 1
                if all(rotations):
                    every_chain_rotated.set()

        tasks = [asyncio.create_task(chain(n)) for n in range(chains)]
        # Kill once every chain has an acknowledged rotation (however slow the machine is).
        await asyncio.wait_for(every_chain_rotated.wait(), timeout=60)
        server.kill()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)

    assert not refused, refused
    assert all(rotations), f"a chain never rotated before the kill: {rotations}"

    server.start()  # same environment, same port
    async with server.async_client(timeout=10) as client:
        successors = []
        for n, token in enumerate(acknowledged):
            first = await refresh(client, token)
            assert first.status_code == 200, f"chain {n}: acknowledged token refused: {first.text}"
            successors.append(first.json()["refresh_token"])
        grace_cases = grace_replays((await client.get(f"{server.management_url}/metrics")).text)

        for n, (token, successor) in enumerate(zip(acknowledged, successors, strict=True)):
            # The acknowledged token has one successor only: presented again, same answer.
            again = await refresh(client, token)
            assert again.status_code == 200, f"chain {n}: {again.text}"
            assert again.json()["refresh_token"] == successor, f"chain {n} forked"
            onward = await refresh(client, successor)
            assert onward.status_code == 200, f"chain {n}: successor refused: {onward.text}"
            assert onward.json()["refresh_token"] not in (token, successor)

    rows = throwaway_postgres.sql("SELECT count(*), count(revoked_at) FROM sessions")
    assert rows == [[str(chains), "0"]], f"sessions (total, revoked): {rows}"
    print(
        f"{sum(rotations)} rotations acknowledged before the kill; {grace_cases:.0f} chains "
        "were the grace case (a rotation committed whose answer was lost)"
    )


async def test_redis_outage_degrades_without_errors_and_fanout_resumes(
    throwaway_postgres: ThrowawayPostgres,
    throwaway_redis: ThrowawayRedis,
    make_cluster: MakeCluster,
) -> None:
    """With Redis gone, logins, refreshes and logouts on two instances keep working from the
    database (no 500, /readyz not ready), and once Redis is back a logout on A reaches B
    within 1 s again."""
    cluster, a_server, b_server = await two_subscribed(
        make_cluster, throwaway_postgres, throwaway_redis
    )
    recorder = Recorder()
    async with a_server.async_client(timeout=10) as a, b_server.async_client(timeout=10) as b:
        await check_logout_reaches(a, b, "alice")  # the fan-out works while Redis is up

        throwaway_redis.stop()
        body = {"username": "alice", "password": cluster.password}
        on_a = await recorder.call("login", lambda: a.post("/auth/login", json=body))
        on_b = await recorder.call("login", lambda: b.post("/auth/login", json=body))
        assert on_a is not None and on_a.status_code == 200, recorder.calls
        assert on_b is not None and on_b.status_code == 200, recorder.calls
        pair = on_a.json()
        for client in (b, a, b):  # a chain that hops between the instances
            rotated = await recorder.call(
                "refresh", partial(refresh, client, pair["refresh_token"])
            )
            assert rotated is not None and rotated.status_code == 200, recorder.calls[-1]
            pair = rotated.json()
        for client in (a, b):
            me = await recorder.call("me", partial(client.get, "/auth/me", headers=bearer(pair)))
            assert me is not None and me.status_code == 200, recorder.calls[-1]

        logout = await recorder.call("logout", lambda: a.post("/auth/logout", headers=bearer(pair)))
        assert logout is not None and logout.status_code == 204, recorder.calls[-1]
        # The database is the truth: B's /auth/me refuses at once, the refresh token is dead.
        took = await wait_for_status(b, "/auth/me", bearer(pair), 401, 1.0)
        assert took is not None, "B's /auth/me accepted a logged-out session"
        dead = await recorder.call("refresh", lambda: refresh(b, pair["refresh_token"]))
        assert dead is not None and dead.status_code == 401, recorder.calls[-1]
        other = on_b.json()
        by_refresh_token = await recorder.call(
            "logout", lambda: b.post("/auth/logout", json={"refresh_token": other["refresh_token"]})
        )
        assert by_refresh_token is not None and by_refresh_token.status_code == 204
        gone = await recorder.call("refresh", lambda: refresh(a, other["refresh_token"]))
        assert gone is not None and gone.status_code == 401, recorder.calls[-1]

        for client in (a, b):
            ready = await readyz(client)
            if ready is not None:
                assert ready.status_code == 503 or ready.json()["checks"]["redis"] != "ok", (
                    ready.text
                )

        throwaway_redis.start()  # same port, empty (no persistence)
        for client in (a, b):
            took = await wait_for_status(client, "/readyz", {}, 200, RECOVERY_BOUND)
            assert took is not None, "/readyz did not recover with Redis"
        await wait_subscribed(lambda: throwaway_redis.subscribers(REVOCATION_CHANNEL) == 2)
        await check_logout_reaches(a, b, "alice")

    assert not recorder.unexpected({200, 204, 401}), recorder.unexpected({200, 204, 401})
    slowest = recorder.slowest()
    assert slowest.latency < ANSWER_BOUND, f"slowest answer took {slowest.latency:.2f} s: {slowest}"


async def two_subscribed(
    make_cluster: MakeCluster, postgres: ThrowawayPostgres, redis: ThrowawayRedis
) -> tuple[Cluster, Instance, Instance]:
    """Two instances on ``postgres`` and ``redis``, user alice, both following the channel."""
    cluster = make_cluster(postgres.url, redis.url)
    cluster.migrate()
    cluster.add_user("alice")
    a_server, b_server = cluster.start(2)
    await wait_subscribed(lambda: redis.subscribers(REVOCATION_CHANNEL) == 2)
    return cluster, a_server, b_server


async def wait_subscribed(condition: Callable[[], bool]) -> None:
    """Wait (at most RECOVERY_BOUND s) until both instances follow the revocation channel."""
    deadline = time.monotonic() + RECOVERY_BOUND
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "the instances did not subscribe to Redis in time"
        await asyncio.sleep(0.05)


async def test_logout_while_redis_is_down_reaches_other_guards_once_it_is_back(
    throwaway_postgres: ThrowawayPostgres,
    throwaway_redis: ThrowawayRedis,
    make_cluster: MakeCluster,
) -> None:
    """A logout on A while Redis is down reaches B's in-memory guard once Redis is back, as
    docs/deployment.md promises ("other instances' in-memory guards learn it when Redis is
    back")."""
    _, a_server, b_server = await two_subscribed(make_cluster, throwaway_postgres, throwaway_redis)
    async with a_server.async_client(timeout=10) as a, b_server.async_client(timeout=10) as b:
        pair = await alogin(a, "alice")
        throwaway_redis.stop()
        assert (await a.post("/auth/logout", headers=bearer(pair))).status_code == 204
        throwaway_redis.start()
        await wait_subscribed(lambda: throwaway_redis.subscribers(REVOCATION_CHANNEL) == 2)
        await asyncio.sleep(1.0)  # one more second for any resynchronisation
        # One probe of B's guard alone (see check_logout_reaches): 401 = B learnt it.
        probe = await b.post("/auth/logout", headers=bearer(pair))
        assert probe.status_code == 401, "B's guard still accepts the logged-out session"


def claims_in(pair: dict[str, Any]) -> dict[str, Any]:
    """The claims of a pair's access token (read, not verified: the test's own)."""
    payload = pair["access_token"].split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


async def until_refused(deny_list: RedisDenyList, pairs: list[dict[str, Any]]) -> float | None:
    """Seconds until ``deny_list`` refuses the access token of every pair (its session
    revoked, or all its user's sessions ended at once); None if not within RECOVERY_BOUND."""
    tokens = [claims_in(pair) for pair in pairs]
    started = time.monotonic()
    while not all(deny_list.refuses(c["sub"], c["sid"], c["iat"]) for c in tokens):
        if time.monotonic() - started > RECOVERY_BOUND:
            return None
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.timeout(300)  # the longest fault test: a bound for a busy machine
async def test_redis_killed_restarted_empty_and_hung_loses_no_revocation(
    throwaway_postgres: ThrowawayPostgres,
    throwaway_redis: ThrowawayRedis,
    make_cluster: MakeCluster,
) -> None:
    """Two instances under a stream of logins, refreshes and /auth/me; Redis is killed,
    restarted empty, then hung for 5 s. No request fails; a logout made during the crash
    reaches a consumer that was running (RedisDenyList, as an API uses it); a consumer started
    after the empty restart knows the sessions revoked before and during the crash (the
    instances store them again from the database), those ended one by one (logout) and those
    ended all at once (bob's logout-all before the crash, carol's during it)."""
    cluster, a_server, b_server = await two_subscribed(
        make_cluster, throwaway_postgres, throwaway_redis
    )
    await asyncio.gather(*(asyncio.to_thread(cluster.add_user, name) for name in ("bob", "carol")))
    running = RedisDenyList(throwaway_redis.url)
    late: RedisDenyList | None = None
    async with a_server.async_client(timeout=10) as a, b_server.async_client(timeout=10) as b:
        streams = [
            Traffic(client, [await alogin(client, "alice") for _ in range(3)], cluster.password)
            for client in (a, b)
        ]
        for stream in streams:
            stream.start()
        try:
            before = await alogin(a, "alice")
            assert (await a.post("/auth/logout", headers=bearer(before))).status_code == 204
            bob = [await alogin(a, "bob") for _ in range(2)]
            assert (await a.post("/auth/logout-all", headers=bearer(bob[0]))).status_code == 204
            assert await until_refused(running, [before, *bob]) is not None

            throwaway_redis.stop()  # killed: no persistence, its data is gone
            during = await alogin(b, "alice")
            assert (await b.post("/auth/logout", headers=bearer(during))).status_code == 204
            carol = [await alogin(b, "carol") for _ in range(2)]
            assert (await b.post("/auth/logout-all", headers=bearer(carol[0]))).status_code == 204
            throwaway_redis.start()  # the same port, empty
            late = await asyncio.to_thread(RedisDenyList, throwaway_redis.url)
            ended = [before, during, *bob, *carol]
            learnt = await until_refused(late, ended)
            assert learnt is not None, "a consumer started after the restart lacks revocations"
            assert await until_refused(running, ended) is not None

            hung = time.monotonic()
            throwaway_redis.pause()
            try:
                await asyncio.sleep(5.0)
            finally:
                throwaway_redis.resume()
            resumed = time.monotonic()
            await asyncio.sleep(1.0)  # a last second of traffic with Redis back
        finally:
            for stream in streams:
                await stream.stop()
        for client in (a, b):  # the instances are back on Redis: a logout reaches the other
            assert (await readyz(client) or httpx.Response(200)).status_code == 200
        await check_logout_reaches(a, b, "alice")
        counts = [await stream.ledger.count(stream.client) for stream in streams]
    running.close()
    if late is not None:
        late.close()
    assert counts == [ZERO, ZERO], [str(count) for count in counts]

    calls = [call for stream in streams for call in stream.calls]
    failed = [call for call in calls if call.status != 200]
    assert not failed, f"{len(failed)} requests failed: {failed[:5]}"
    during_hang = [call for call in calls if call.started >= hung and call.ended <= resumed]
    assert any(call.kind == "login" for call in during_hang), "no login answered in the hang"
    slowest = max(calls, key=lambda call: call.latency)
    assert slowest.latency < ANSWER_BOUND, f"slowest answer took {slowest.latency:.2f} s"
    print(
        f"{len(calls)} requests, {len(during_hang)} during the hang; a late consumer knew "
        f"every revocation {learnt:.2f} s after Redis restarted; slowest {slowest.latency:.3f} s"
    )
