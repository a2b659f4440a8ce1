"""Fixtures of the cluster tests: a throwaway PostgreSQL and Redis, latchkey instances.

Every fixture stops what it started in its finalizer, also when the test fails; the report
of a failing test carries the log tail of every server still running. The classes live in
``cluster_support.py``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    LIVE,
    Cluster,
    MakeCluster,
    ThrowawayPostgres,
    ThrowawayRedis,
    TwoInstances,
    init_template,
    postgres_bin,
    private_dir,
    running_cluster,
    running_postgres,
    running_redis,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log tails of every live server to a failing test's report."""
    report = yield
    if report.failed:
        for server in list(LIVE):
            report.sections.append((f"log of {server.name}", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[tuple[Path, Path]]:
    """``(bin_dir, data_dir)`` of one initdb for the whole run; each server copies it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    root = private_dir("latchkey-pg-template-")
    try:
        yield bin_dir, init_template(bin_dir, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres(postgres_template: tuple[Path, Path]) -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL of this test alone (url, stop(crash=…), start()); removed afterwards."""
    with running_postgres(postgres_template) as server:
        yield server


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    """A redis-server of this test alone (url, stop(), start()); killed afterwards."""
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture(scope="module")
def two_instances(
    postgres_template: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TwoInstances]:
    """PostgreSQL + Redis + two instances (grace 10 s, key reload every 1 s) and user alice,
    shared by the tests of one module; all stopped after its last test."""
    workdir = tmp_path_factory.mktemp("two-instances")
    with (
        running_postgres(postgres_template) as postgres,
        running_redis(workdir) as redis_server,
        running_cluster(
            workdir,
            postgres.url,
            redis_server.url,
            LATCHKEY_REFRESH_GRACE=str(TwoInstances.GRACE),
            LATCHKEY_KEY_REFRESH_INTERVAL=str(TwoInstances.KEY_REFRESH_INTERVAL),
        ) as cluster,
    ):
        cluster.migrate()
        cluster.add_user("alice")
        a, b = cluster.start(2)
        yield TwoInstances(cluster, a, b, postgres, redis_server)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """``make_cluster(database_url, redis_url=None, **LATCHKEY_settings)``: a Cluster whose
    instances are all stopped when the test ends."""
    with contextlib.ExitStack() as stack:

        def make(database_url: str, redis_url: str | None = None, **settings: str) -> Cluster:
            workdir = Path(tempfile.mkdtemp(prefix="cluster-", dir=tmp_path))
            return stack.enter_context(
                running_cluster(workdir, database_url, redis_url, **settings)
            )

        yield make
