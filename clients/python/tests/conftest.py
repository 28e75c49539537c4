"""Fixtures for the client tests. scripts/clients.sh starts the servers (one per edition of
pg_barrier, a PgBouncer in transaction-pooling mode in front of them, a Redis for Celery) and
runs pytest once per edition with their addresses in the environment."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Callable, Iterator

import psycopg
import pytest

from pg_barrier import Barriers


def _setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"{name} is not set: run the client tests through scripts/clients.sh, which starts "
            "the servers they need",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def dsn() -> str:
    """A direct connection to a database with pg_barrier, as an ordinary role."""
    return _setting("PG_BARRIER_DSN")


@pytest.fixture(scope="session")
def other_dsn() -> str:
    """The same database as another ordinary role."""
    return _setting("PG_BARRIER_OTHER_DSN")


@pytest.fixture(scope="session")
def bouncer_dsn() -> str:
    """The same database through PgBouncer in transaction-pooling mode."""
    return _setting("PG_BARRIER_BOUNCER_DSN")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _setting("PG_BARRIER_REDIS_URL")


@pytest.fixture(scope="session")
def edition(dsn: str) -> str:
    """The edition the harness says it started, checked against the server: the Rust build's
    extension version has no -sql suffix and its library is loaded."""
    expected = _setting("PG_BARRIER_EDITION")
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'"
        ).fetchone()
        assert version is not None, "pg_barrier is not installed in the test database"
        actual = "sql" if version[0].endswith("-sql") else "rust"
    assert actual == expected, f"the harness says {expected}, the server has the {actual} edition"
    return actual


@pytest.fixture
def conn(dsn: str, edition: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def barriers(conn: psycopg.Connection[Any]) -> Barriers:
    return Barriers(conn)


@pytest.fixture
def new_id(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Barrier ids unique to this run, named after the test (the harness runs the suite twice
    against the same servers)."""

    def make() -> str:
        return f"{request.node.name[:60]}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def new_channel() -> Callable[[], str]:
    def make() -> str:
        return f"test_{uuid.uuid4().hex[:16]}"

    return make


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``check`` until it returns something truthy; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell whether it failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
