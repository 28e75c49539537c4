"""The Celery application of the end-to-end tests, loaded by the test process (the producer)
and by the workers it starts (`celery -A celery_app worker`). It records every task run and every
callback in tables of the test database, so the test can count them.

PG_BARRIER_TEST_CRASH injects a crash for the recovery tests: the first worker to reach the
point named (after-commit: the completing report has committed, nothing is dispatched yet;
after-dispatch: the callback is sent, its dispatch not yet committed) kills itself with SIGKILL.
The marker file makes it happen once across workers.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg
from celery import Celery
from psycopg.types.json import Jsonb

import pg_barrier.celery as pg_barrier_celery

DSN = os.environ["PG_BARRIER_DSN"]

app = Celery("pg_barrier_tests", broker=os.environ["PG_BARRIER_REDIS_URL"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    # A killed worker's unacknowledged messages go back to the queue once they are 5 s old,
    # looked for every second (kombu's default sweep is every 10 s, 1 in 10 of them scanning).
    broker_transport_options={
        "visibility_timeout": 5,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    # Callbacks have a queue and a worker of their own, which the tests never kill: a worker
    # killed right after dispatching a callback could otherwise have fetched that very message
    # from Redis and died before recording it as unacknowledged, and Redis would lose it.
    task_routes={"celery_app.collect": {"queue": "callbacks"}},
)
pg_barrier_celery.configure(app, DSN, recovery_interval=2.0)


class Transient(Exception):
    """A failure the task retries."""


def _record(statement: str, params: tuple) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(statement, params)


@app.task(bind=True, autoretry_for=(Transient,), max_retries=5, default_retry_delay=0.2)
def work(self, tag: str, slot: int, seconds: float = 0.0, fail_first: int = 0,
         always_fail: bool = False, pad: int = 0) -> dict:
    _record(
        "INSERT INTO client_tests.celery_runs (tag, slot, attempt, pid) VALUES (%s, %s, %s, %s)",
        (tag, slot, self.request.retries, os.getpid()),
    )
    time.sleep(seconds)
    if always_fail:
        raise ValueError(f"slot {slot} cannot be computed")
    if self.request.retries < fail_first:
        raise Transient(f"slot {slot}, attempt {self.request.retries}")
    if pad:
        return {"slot": slot, "pad": "x" * pad}
    return {"slot": slot, "square": slot * slot}


@app.task(bind=True)
def collect(self, results: list, tag: str) -> None:
    """The callback: records its run, with the barrier's status as it sees it (a callback sent
    before the completing report committed could see it pending)."""
    key = pg_barrier_celery.parse_completion_key(self.request.id)
    status = None
    if key is not None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            row = conn.execute("SELECT status FROM barrier_status(%s)", (key[0],)).fetchone()
            status = row and row[0]
    _record(
        "INSERT INTO client_tests.celery_callbacks (tag, task_id, results, pid, status)"
        " VALUES (%s, %s, %s, %s, %s)",
        (tag, self.request.id, Jsonb(results), os.getpid(), status),
    )


def _crash_once(point: str) -> None:
    if os.environ.get("PG_BARRIER_TEST_CRASH") != point:
        return
    try:
        os.close(os.open(os.environ["PG_BARRIER_TEST_CRASH_MARKER"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


_hand_off = pg_barrier_celery.hand_off
_dispatch = pg_barrier_celery._dispatch


def _crashing_hand_off(app, barrier_id):
    _crash_once("after-commit")
    return _hand_off(app, barrier_id)


def _crashing_dispatch(*args, **kwargs):
    _dispatch(*args, **kwargs)
    _crash_once("after-dispatch")


pg_barrier_celery.hand_off = _crashing_hand_off
pg_barrier_celery._dispatch = _crashing_dispatch
