"""pg_barrier.celery end to end: real Celery workers (separate processes) on a real Redis
broker, with acks_late, a worker killed with SIGKILL mid-run, injected task failures, and
crashes between the completing commit and the callback's dispatch."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional

import psycopg
import pytest

from pg_barrier import Barriers, State, Waiter
from pg_barrier.celery import (
    DEFAULT_CHANNEL,
    completion_key,
    configure,
    fan_in,
    hand_off,
    parse_completion_key,
    recover,
)

from conftest import eventually

HERE = Path(__file__).parent
# Long enough for a killed worker's messages to come back (visibility_timeout 5 s) and for two
# recovery passes (every 2 s): a second callback would have run by then.
SETTLE_SECONDS = 14


@pytest.fixture(scope="module")
def celery(dsn: str, redis_url: str, edition: str):
    """The test app (celery_app.py), imported here as the producer, with fresh tables and an
    empty broker."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS client_tests.celery_runs (tag text, slot int,"
            " attempt int, pid int, at timestamptz DEFAULT clock_timestamp())"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS client_tests.celery_callbacks (tag text, task_id text,"
            " results jsonb, pid int, status text, at timestamptz DEFAULT clock_timestamp())"
        )
    sys.path.insert(0, str(HERE))
    import celery_app  # noqa: E402  (needs the environment the fixtures checked)

    import redis

    redis.Redis.from_url(redis_url).flushdb()
    return celery_app


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass  # the group is empty


class Workers:
    """Celery worker processes, each in its own process group so a SIGKILL takes all of it."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.processes: dict[str, subprocess.Popen] = {}

    def start(
        self, name: str, beat: bool = False, queue: str = "celery", pool: str = "threads"
    ) -> subprocess.Popen:
        command = [
            sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-Q", queue,
            f"--pool={pool}", "--concurrency=4", "--loglevel=INFO", "-n", f"{name}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        if beat:
            command += ["-B", "--schedule", str(self.tmp_path / f"{name}-beat")]
        log = open(self.tmp_path / f"{name}.log", "ab")
        process = subprocess.Popen(
            command, cwd=HERE, env={**os.environ, **self.env, "PYTHONPATH": str(HERE)},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait()

    def stop_all(self) -> None:
        """Stops every worker and whatever its process group still holds: a worker that was
        killed (or killed itself) leaves its embedded beat process (-B) behind."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp_path.glob("*.log"))
        )


@pytest.fixture
def workers(tmp_path: Path, request: pytest.FixtureRequest):
    pool = Workers(tmp_path, {})
    pool.start("callbacks", queue="callbacks")
    yield pool
    pool.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pool.logs())


def _rows(dsn: str, query: str, params: tuple) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _callbacks(dsn: str, tag: str) -> list[tuple[str, Any]]:
    """The callback's runs for a fan-in: (task id, results). Each run saw the barrier complete:
    it was dispatched after the completing report committed."""
    rows = _rows(
        dsn,
        "SELECT task_id, results, status FROM client_tests.celery_callbacks WHERE tag = %s"
        " ORDER BY at",
        (tag,),
    )
    assert all(status == "complete" for _, _, status in rows), rows
    return [(task_id, results) for task_id, results, _ in rows]


def _runs(dsn: str, tag: str) -> list[tuple[int, int, int]]:
    return _rows(
        dsn, "SELECT slot, attempt, pid FROM client_tests.celery_runs WHERE tag = %s", (tag,)
    )


def _expected(slots: int) -> list[dict]:
    return [{"slot": slot, "square": slot * slot} for slot in range(slots)]


def _figures(line: dict) -> None:
    """The figures the closing note quotes, appended where the harness asks."""
    path = os.environ.get("PG_BARRIER_FIGURES")
    text = json.dumps(line)
    print(text)
    if path:
        with open(path, "a") as figures:
            figures.write(text + "\n")


def test_a_200_task_fan_in_survives_a_worker_killed_mid_run(celery, dsn, workers, edition):
    tag = uuid.uuid4().hex
    slots = 200
    rng = random.Random(tag)
    # Every 17th slot fails twice before it succeeds (retried by the task itself).
    header = [
        celery.work.s(tag, slot, seconds=rng.uniform(0.3, 0.6), fail_first=2 if slot % 17 == 0 else 0)
        for slot in range(slots)
    ]
    workers.start("beat", beat=True)
    victim = workers.start("victim")
    workers.start("third")
    barrier_id = fan_in(header, celery.collect.s(tag), id=f"celery-{tag}", app=celery.app)

    # Kill the victim while all four of its threads run tasks (four runs started in the last
    # 300 ms; tasks last 300 to 600 ms), once a quarter of the runs are in: then every message it
    # holds is recorded as unacknowledged in Redis and comes back (a worker with a free thread
    # may be killed between popping a message and recording it, and Redis would lose that one).
    def victim_busy() -> bool:
        return _rows(
            dsn,
            "SELECT count(*) >= 50 AND count(*) FILTER (WHERE pid = %s"
            "   AND at > clock_timestamp() - interval '300 ms') >= 4"
            " FROM client_tests.celery_runs WHERE tag = %s",
            (victim.pid, tag),
        )[0][0]

    eventually(victim_busy, 120, "the victim worker busy after 50 runs")
    killed_at = len(_runs(dsn, tag))
    workers.kill("victim")
    workers.start("replacement")

    eventually(lambda: _callbacks(dsn, tag), 180, "the callback")
    time.sleep(SETTLE_SECONDS)
    callbacks = _callbacks(dsn, tag)
    runs = _runs(dsn, tag)

    assert len(callbacks) == 1, f"the callback ran {len(callbacks)} times"
    task_id, results = callbacks[0]
    assert results == _expected(slots)
    assert task_id == completion_key(barrier_id, 1)
    assert parse_completion_key(task_id) == (barrier_id, 1)
    first_attempts = [slot for slot, attempt, _ in runs if attempt == 0]
    redelivered = len(first_attempts) - len(set(first_attempts))
    assert set(first_attempts) == set(range(slots))
    assert redelivered >= 1, "no task was redelivered after the SIGKILL"
    assert sum(1 for _, attempt, _ in runs if attempt > 0) >= 2 * len(range(0, slots, 17))
    with psycopg.connect(dsn, autocommit=True) as conn:
        state = Barriers(conn).status(barrier_id)
        assert state is not None and state.status is State.COMPLETE
        assert Barriers(conn).take(barrier_id) is None  # its dispatch was recorded
    _figures({
        "test": "200 tasks, a worker killed", "edition": edition, "tasks": slots,
        "runs": len(runs), "runs when killed": killed_at, "redelivered runs": redelivered,
        "retried runs": sum(1 for _, attempt, _ in runs if attempt > 0),
        "callbacks": len(callbacks), "results in order": results == _expected(slots),
    })


def test_a_task_that_fails_aborts_the_barrier(celery, dsn, workers, edition):
    tag = uuid.uuid4().hex
    header = [celery.work.s(tag, slot, always_fail=(slot == 7)) for slot in range(30)]
    workers.start("one", beat=True)
    workers.start("two")
    barrier_id = fan_in(header, celery.collect.s(tag), id=f"celery-{tag}", app=celery.app)
    with Waiter(dsn, poll_interval=0.5) as waiter:
        state = waiter.wait(barrier_id, timeout=120)
    assert state.status is State.ABORTED
    assert state.reason is not None and "slot 7" in state.reason and "ValueError" in state.reason
    time.sleep(SETTLE_SECONDS)
    assert _callbacks(dsn, tag) == []
    _figures({"test": "a failing task", "edition": edition, "tasks": 30,
              "status": state.status.value, "reason": state.reason, "callbacks": 0})


@pytest.mark.parametrize("point", ["after-commit", "after-dispatch"])
def test_a_crash_around_the_dispatch_is_recovered(celery, dsn, workers, edition, tmp_path, point):
    tag = uuid.uuid4().hex
    slots = 20
    workers.env.update({
        "PG_BARRIER_TEST_CRASH": point,
        "PG_BARRIER_TEST_CRASH_MARKER": str(tmp_path / "crashed"),
    })
    first = workers.start("first", beat=True)
    second = workers.start("second")
    barrier_id = fan_in(
        [celery.work.s(tag, slot, seconds=0.05) for slot in range(slots)],
        celery.collect.s(tag), id=f"celery-{tag}", app=celery.app,
    )
    eventually(lambda: first.poll() is not None or second.poll() is not None, 120,
               f"a worker to crash {point}")
    assert (tmp_path / "crashed").exists()
    workers.start("replacement", beat=True)
    eventually(lambda: _callbacks(dsn, tag), 120, "the callback")
    time.sleep(SETTLE_SECONDS)
    callbacks = _callbacks(dsn, tag)
    keys = {task_id for task_id, _ in callbacks}
    assert keys == {completion_key(barrier_id, 1)}
    assert all(results == _expected(slots) for _, results in callbacks)
    if point == "after-commit":
        # Nothing was dispatched before the crash: exactly one dispatch, by the recovery.
        assert len(callbacks) == 1
    else:
        # Dispatched, then the crash rolled back its record: dispatched again, same key.
        assert len(callbacks) == 2
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert Barriers(conn).take(barrier_id) is None
    _figures({"test": f"crash {point}", "edition": edition, "tasks": slots,
              "callbacks": len(callbacks), "keys": sorted(keys)})


def test_a_completion_the_broker_refused_is_dispatched_by_the_recovery(celery, dsn, workers):
    from celery import Celery

    tag = uuid.uuid4().hex
    barrier_id = f"celery-{tag}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        barriers.enqueue(barrier_id, 2, callback={"celery": dict(celery.collect.s(tag))},
                         channel=DEFAULT_CHANNEL)
        barriers.report(barrier_id, {"slot": 0, "square": 0}, slot=0)
        assert barriers.report(barrier_id, {"slot": 1, "square": 1}, slot=1).completed
    # A producer whose broker is down: nothing listens on port 1.
    down = Celery("down", broker="redis://127.0.0.1:1/0")
    down.conf.broker_connection_retry = False
    down.conf.broker_connection_max_retries = 0
    configure(down, dsn)
    with pytest.raises(Exception) as refused:
        hand_off(down, barrier_id)
    assert "kombu" in type(refused.value).__module__, refused.value
    # The take was rolled back with the failed dispatch: the completion is still there to take.
    with psycopg.connect(dsn) as conn:
        assert Barriers(conn).take(barrier_id) is not None
        conn.rollback()
    workers.start("consumer")
    dispatched = recover(celery.app)
    assert dispatched >= 1
    eventually(lambda: _callbacks(dsn, tag), 60, "the recovered callback")
    time.sleep(3)
    callbacks = _callbacks(dsn, tag)
    assert [(task_id, results) for task_id, results in callbacks] == [
        (completion_key(barrier_id, 1), _expected(2))
    ]


def test_a_killed_prefork_child_is_redelivered_not_a_failure(celery, dsn, workers, edition):
    """With the prefork pool a SIGKILL takes one pool process; with reject_on_worker_lost its
    task goes back to the queue instead of failing (which would abort the fan-in)."""
    tag = uuid.uuid4().hex
    slots = 40
    header = [celery.work.s(tag, slot, seconds=0.4) for slot in range(slots)]
    parent = workers.start("prefork", pool="prefork")
    barrier_id = fan_in(header, celery.collect.s(tag), id=f"celery-{tag}", app=celery.app)

    def busy_child() -> Optional[int]:
        rows = _rows(
            dsn,
            "SELECT pid FROM client_tests.celery_runs WHERE tag = %s"
            " AND at > clock_timestamp() - interval '200 ms' LIMIT 1",
            (tag,),
        )
        return rows[0][0] if rows and len(_runs(dsn, tag)) >= 8 else None

    child = eventually(busy_child, 120, "a pool process running a task")
    assert child != parent.pid
    os.kill(child, signal.SIGKILL)
    eventually(lambda: _callbacks(dsn, tag), 120, "the callback")
    time.sleep(SETTLE_SECONDS)
    callbacks = _callbacks(dsn, tag)
    assert [results for _, results in callbacks] == [_expected(slots)]
    runs = _runs(dsn, tag)
    assert len(runs) > slots, "the killed child's task was not run again"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert Barriers(conn).status(barrier_id).status is State.COMPLETE
    _figures({"test": "a prefork child killed", "edition": edition, "tasks": slots,
              "runs": len(runs), "callbacks": len(callbacks)})


def test_a_result_too_large_aborts_the_barrier(celery, dsn, workers):
    tag = uuid.uuid4().hex
    header = [celery.work.s(tag, slot, pad=(2 << 20) if slot == 3 else 0) for slot in range(6)]
    workers.start("one")
    barrier_id = fan_in(header, celery.collect.s(tag), id=f"celery-{tag}", app=celery.app)
    with Waiter(dsn, poll_interval=0.5) as waiter:
        state = waiter.wait(barrier_id, timeout=60)
    assert state.status is State.ABORTED
    assert state.reason is not None and state.reason.startswith("slot 3: result refused")
    assert _callbacks(dsn, tag) == []


def test_a_completion_that_is_not_a_chords_is_taken_not_dispatched(celery, dsn, workers):
    """pg_barrier 0.4's other completions on the recovery's channel (with failures, a delivered
    expiry) carry a fan_in callback here, but a chord would not run it: hand_off and recover
    take them without dispatching."""
    tag = uuid.uuid4().hex
    callback = {"celery": dict(celery.collect.s(tag))}
    with_failures, expired = f"celery-{tag}-failures", f"celery-{tag}-expired"
    with psycopg.connect(dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        barriers.enqueue(with_failures, 2, callback=callback, channel=DEFAULT_CHANNEL)
        barriers.report(with_failures, {"slot": 0, "square": 0}, slot=0)
        answer = barriers.report(with_failures, {"error": "x"}, slot=1, failed=True)
        assert answer.completed
        barriers.enqueue(expired, 2, callback=callback, channel=DEFAULT_CHANNEL,
                         ttl=timedelta(seconds=1), on_expiry="deliver")
        barriers.report(expired, {"slot": 0, "square": 0}, slot=0)
        time.sleep(1.2)
        barriers.sweep(10000)
    assert hand_off(celery.app, with_failures) is False
    recover(celery.app)
    time.sleep(3)
    assert _callbacks(dsn, tag) == []
    with psycopg.connect(dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        assert barriers.take(with_failures) is None and barriers.take(expired) is None
