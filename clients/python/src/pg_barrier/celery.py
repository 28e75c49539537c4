"""A drop-in for Celery's chord, with pg_barrier as the counter::

    from pg_barrier.celery import configure, fan_in

    configure(app, "postgresql://app@db/etl")
    fan_in([count_rows.s(part) for part in parts], publish.s(day="2026-11-29"))

``fan_in`` enqueues a barrier expecting one report per header task, then dispatches each header
task linked to ``pg_barrier.report`` (which reports its result under the task's slot) and to
``pg_barrier.failed`` (which aborts the barrier). The callback is called with every result in
header order, as a chord's is, and **only after** the completing report has committed:

1. the completing report commits (``barrier_decr`` answers ``complete``);
2. in a new transaction, ``barrier_take`` claims the completion (it is handed out once, and held
   locked until that transaction ends), the callback is sent to the broker, and the transaction
   commits, recording the dispatch;
3. if the process dies (or the broker refuses the message) anywhere before that commit, the
   completion stays untaken: a redelivered report of the barrier, or the recovery pass
   (``pg_barrier.recover``: on every worker's start and every ``recovery_interval`` seconds in
   beat), claims it with ``barrier_completions`` and dispatches it.

So every completion is dispatched at least once, and exactly once unless a process dies between
sending the callback and committing its dispatch. For that case the callback's task id is its
idempotency key, ``pg_barrier:<barrier id>:<round>``: the same for every dispatch of one
completion (:func:`parse_completion_key` reads it back).

Redelivered header tasks (``acks_late``, a worker killed mid-task) report the same slot again,
which answers ``duplicate`` and changes nothing. A header task that fails (after its own retries)
aborts the barrier with a reason naming the slot: the callback never runs, and waiters see
``ABORTED``.

Only a completion whose status is ``complete`` (every header task succeeded) runs the callback,
as a chord's. ``fan_in``'s barriers never end otherwise, but a barrier of another shape on the
same channel (pg_barrier 0.4: a completion with failures, a delivered expiry) would: such a
completion is taken and logged as an error, never dispatched.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
import warnings
from datetime import timedelta
from typing import Any, Optional, Sequence

import psycopg
from celery import Celery, Signature, current_app
from celery.signals import worker_ready
from kombu.exceptions import KombuError
from kombu.utils import json as kombu_json
from psycopg.types.json import Jsonb

from . import Barriers, CompletionStatus, ReportStatus
from .errors import InvalidArgument, LimitExceeded, SerializationFailure

log = logging.getLogger(__name__)

#: The NOTIFY channel of the barriers ``fan_in`` creates, and the channel the recovery pass
#: claims completions from (so that it never takes another consumer's).
DEFAULT_CHANNEL = "pg_barrier_celery"

_KEY_PREFIX = "pg_barrier:"
_REASON_BYTES = 1024  # barrier_abort's limit on a reason


class _Config:
    def __init__(
        self, conninfo: str, channel: str, schema: Optional[str], recovery_batch: int
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.schema = schema
        self.recovery_batch = recovery_batch
        self.local = threading.local()

    def barriers(self) -> Barriers:
        """A Barriers on this thread's own connection (autocommit; explicit transactions),
        opened in this process: a prefork child never uses a connection its parent opened."""
        conn: Optional[psycopg.Connection[Any]] = getattr(self.local, "conn", None)
        if getattr(self.local, "pid", None) != os.getpid():
            conn = None  # inherited through fork: the parent's socket, not ours to use
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self.conninfo, autocommit=True, prepare_threshold=None)
            self.local.conn, self.local.pid = conn, os.getpid()
        return Barriers(conn, schema=self.schema)


def _config(app: Celery) -> _Config:
    config: Optional[_Config] = getattr(app, "_pg_barrier", None)
    if config is None:
        raise RuntimeError("pg_barrier.celery: call configure(app, conninfo) first")
    return config


def completion_key(barrier_id: str, round: int) -> str:
    """The callback's task id for a barrier's round: the same for every dispatch of it."""
    return f"{_KEY_PREFIX}{barrier_id}:{round}"


def parse_completion_key(task_id: str) -> Optional[tuple[str, int]]:
    """The (barrier id, round) a callback's task id names, or None if it is not one of ours."""
    if not task_id.startswith(_KEY_PREFIX):
        return None
    barrier_id, _, round = task_id[len(_KEY_PREFIX) :].rpartition(":")
    return (barrier_id, int(round)) if round.isdigit() else None


def _encode(result: Any) -> Jsonb:
    """A task's result as jsonb, encoded as Celery's JSON serializer encodes it (datetimes,
    decimals and UUIDs included), so that the callback gets back what a chord would give it."""
    return Jsonb(result, dumps=kombu_json.dumps)


def _dispatch(app: Celery, barrier_id: str, round: int, results: Any, callback: Any) -> None:
    """Sends the stored callback signature with the results prepended to its arguments."""
    signature = app.signature(callback["celery"])
    decoded = kombu_json.loads(json.dumps(results))
    signature.apply_async((decoded,), task_id=completion_key(barrier_id, round))


def _not_a_chords(barrier_id: str, status: CompletionStatus) -> bool:
    """Whether a completion is not one a chord's callback runs for (some header task failed,
    or the barrier expired), logging that it is taken and dropped."""
    if status is CompletionStatus.COMPLETE:
        return False
    log.error("pg_barrier: the completion of %r is %s, not a chord's completion; "
              "it is taken and dropped", barrier_id, status.value)
    return True


def hand_off(app: Celery, barrier_id: str) -> bool:
    """Takes the barrier's completion and dispatches its callback, in one transaction: true if
    this call dispatched it, false if it is not complete or someone else has taken it. A
    completion that is not ``complete`` (a barrier of another shape) is taken, not dispatched."""
    barriers = _config(app).barriers()
    with barriers.conn.transaction():
        taken = barriers.take(barrier_id)
        if taken is None:
            return False
        if _not_a_chords(barrier_id, taken.status):
            return False
        # barrier_take holds the barrier's row until commit, so no new round can start between
        # the take and this read: the round is the one being handed out.
        state = barriers.status(barrier_id)
        assert state is not None
        _dispatch(app, barrier_id, state.round, taken.results, taken.callback)
    return True


def recover(app: Celery) -> int:
    """Dispatches the completions whose dispatch did not happen (a crash after the completing
    commit, a broker that refused the callback): each claimed with ``barrier_completions`` and
    dispatched in one transaction. Returns how many it dispatched."""
    config = _config(app)
    barriers = config.barriers()
    dispatched = 0
    for _ in range(config.recovery_batch):
        with barriers.conn.transaction():
            claimed = barriers.completions(config.channel, 1)
            if not claimed:
                break
            completion = claimed[0]
            if _not_a_chords(completion.id, completion.status):
                continue
            state = barriers.status(completion.id)
            assert state is not None
            try:
                _dispatch(app, completion.id, state.round, completion.results, completion.callback)
            except (KombuError, OSError):
                raise  # the broker: roll the claim back and let the next pass retry
            except Exception:
                # A completion no broker can take (not a fan_in's callback, a result the
                # serializer refuses): oldest first, it would block every pass behind it, so
                # its claim commits and the error says what was dropped.
                log.exception("pg_barrier: the completion of %r cannot be dispatched; "
                              "it is taken and dropped", completion.id)
                continue
        dispatched += 1
        log.info("pg_barrier: recovered the completion of %r", completion.id)
    return dispatched


def _reason(request: Any, slot: int, exc: BaseException) -> str:
    name = getattr(request, "task", None) or "a task"
    return f"{name} (slot {slot}) failed: {type(exc).__name__}: {exc}"


def _abort(app: Celery, barrier_id: str, reason: str) -> None:
    """Aborts the barrier at once or, if the database cannot be reached now, through the
    retrying ``pg_barrier.abort`` task."""
    encoded = reason.encode()
    if len(encoded) > _REASON_BYTES:
        reason = encoded[: _REASON_BYTES - 3].decode(errors="ignore") + "..."
    try:
        _config(app).barriers().abort(barrier_id, reason)
    except psycopg.OperationalError:
        app.tasks["pg_barrier.abort"].apply_async((barrier_id, reason))


def configure(
    app: Celery,
    conninfo: str,
    *,
    channel: str = DEFAULT_CHANNEL,
    schema: Optional[str] = None,
    recovery_interval: Optional[float] = 30.0,
    recovery_batch: int = 100,
) -> None:
    """Registers pg_barrier's tasks on ``app`` (``pg_barrier.report``, ``pg_barrier.failed``,
    ``pg_barrier.abort``, ``pg_barrier.recover``), a recovery pass on each worker's start and, unless
    ``recovery_interval`` is None, one every ``recovery_interval`` seconds in beat's schedule.
    Call it where the app is defined, so that workers and producers both run it."""
    app._pg_barrier = _Config(conninfo, channel, schema, recovery_batch)

    # Reports retry on a lost connection or a serialization failure: dropping one would strand
    # the barrier until its ttl, and a retried slot report can never count twice.
    # shared=False: the tasks close over this app, so they must not be shared with other apps
    # of the process (Celery's default), which would then call them on the wrong app.
    @app.task(
        name="pg_barrier.report",
        shared=False,
        acks_late=True,
        reject_on_worker_lost=True,
        autoretry_for=(psycopg.OperationalError, SerializationFailure),
        retry_backoff=True,
        max_retries=20,
        ignore_result=True,
    )
    def report(result: Any, barrier_id: str, slot: int) -> str:
        barriers = _config(app).barriers()
        try:
            with barriers.conn.transaction():
                answer = barriers.report(barrier_id, _encode(result), slot=slot)
        except (InvalidArgument, LimitExceeded, psycopg.DataError, TypeError, ValueError) as refused:
            # A result pg_barrier will never take (too large, not JSON): retrying cannot help,
            # and dropping it would strand the barrier until its ttl.
            _abort(app, barrier_id, f"slot {slot}: result refused: {refused}")
            raise
        if answer.completed or answer.status in (
            ReportStatus.DUPLICATE,
            ReportStatus.ALREADY_COMPLETE,
        ):
            # Complete: this report made it. Duplicate or already complete: a redelivery,
            # perhaps of the completing report whose process died before dispatching.
            # (Complete with failures cannot happen to a fan_in's barrier, whose tasks never
            # report a failure; hand_off takes such a completion without dispatching it.)
            hand_off(app, barrier_id)
        elif answer.status is not ReportStatus.PENDING:
            log.warning("pg_barrier: slot %d of %r answered %s", slot, barrier_id, answer.status)
        return answer.status.value

    # Called by the worker that ran the failed task, with the request, the exception and the
    # traceback, then the arguments given here (Celery's errback convention).
    @app.task(name="pg_barrier.failed", shared=False, ignore_result=True)
    def failed(request: Any, exc: BaseException, traceback: Any, barrier_id: str, slot: int) -> None:
        log.warning("pg_barrier: slot %d of %r failed: %s", slot, barrier_id, exc)
        _abort(app, barrier_id, _reason(request, slot, exc))

    # The abort, when the errback could not make it at once (the database unreachable).
    @app.task(
        name="pg_barrier.abort",
        shared=False,
        acks_late=True,
        autoretry_for=(psycopg.OperationalError,),
        retry_backoff=True,
        max_retries=20,
        ignore_result=True,
    )
    def abort(barrier_id: str, reason: str) -> str:
        return _config(app).barriers().abort(barrier_id, reason).value

    @app.task(
        name="pg_barrier.recover",
        shared=False,
        autoretry_for=(psycopg.OperationalError,),
        retry_backoff=True,
        max_retries=5,
        ignore_result=True,
    )
    def recover_task() -> int:
        return recover(app)

    def recover_on_start(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "app", app) is app:
            recover_task.delay()

    worker_ready.connect(recover_on_start, weak=False, dispatch_uid=f"pg_barrier:{id(app)}")
    if recovery_interval is not None:
        # Added to beat's schedule once the app is configured, whenever that is.
        app.add_periodic_task(recovery_interval, recover_task.s(), name="pg_barrier.recover")


def _check_redelivery(app: Celery, header: Sequence[Signature]) -> None:
    """Warns about header tasks a lost worker would not run again: without acks_late a task
    is gone once fetched, and without reject_on_worker_lost a killed prefork child counts as a
    failure, which aborts the barrier."""
    for task in header:
        task_type = app.tasks.get(task.task) if task.task else None
        acks_late = getattr(task_type, "acks_late", None)
        reject = getattr(task_type, "reject_on_worker_lost", None)
        acks_late = app.conf.task_acks_late if acks_late is None else acks_late
        reject = app.conf.task_reject_on_worker_lost if reject is None else reject
        if not (acks_late and reject):
            warnings.warn(
                f"pg_barrier.celery: task {task.task} runs without acks_late and "
                "reject_on_worker_lost: a worker lost while running it loses its report, or "
                "aborts the fan-in",
                stacklevel=3,
            )
            return


def fan_in(
    header: Sequence[Signature],
    callback: Signature,
    *,
    id: Optional[str] = None,
    ttl: Optional[timedelta] = None,
    stall_timeout: Optional[timedelta] = None,
    app: Optional[Celery] = None,
) -> str:
    """Runs ``header``'s tasks and then ``callback`` with their results in header order, as
    ``chord(header)(callback)`` would; returns the barrier id (``id``, or a new one).

    Header results must be JSON-serializable. Enqueueing again with the same id and arguments
    while the barrier is live changes nothing, so a producer may retry a fan_in that failed
    half-way (its tasks report under the same slots)."""
    app = app or current_app
    config = _config(app)
    _check_redelivery(app, header)
    barrier_id = id or f"celery-{uuid.uuid4()}"
    barriers = config.barriers()
    barriers.enqueue(
        barrier_id,
        len(header),
        callback={"celery": dict(callback)},
        ttl=ttl,
        channel=config.channel,
        stall_timeout=stall_timeout,
    )
    if not header:
        hand_off(app, barrier_id)
        return barrier_id
    report = app.tasks["pg_barrier.report"]
    failed = app.tasks["pg_barrier.failed"]
    for slot, task in enumerate(header):
        task = task.clone()
        task.link(report.s(barrier_id, slot))
        task.link_error(failed.s(barrier_id, slot))
        task.apply_async()
    return barrier_id
