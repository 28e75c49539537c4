"""Typed calls for every pg_barrier function, on a psycopg 3 connection (synchronous and asyncio).

Each call runs in the connection's current transaction, exactly as the SQL function does: in
autocommit mode each call is its own transaction; otherwise it commits with the caller's other
writes (put a task's report in the transaction of its writes, and they commit or fail together).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional, Sequence, TypeVar

import psycopg
from psycopg import Column

from . import _calls
from ._calls import Call, Rows
from ._types import (
    AbortStatus,
    BarrierStatus,
    Completion,
    EnqueueStatus,
    OnExpiry,
    Report,
    Stats,
    Sweep,
    Taken,
)
from .errors import translate

Answer = TypeVar("Answer")


def _columns(description: Optional[Sequence[Column]]) -> list[str]:
    return [column.name for column in description or ()]


class _Api:
    """The calls both clients share; subclasses say how a call is executed."""

    def __init__(self, schema: Optional[str], prepare: Optional[bool]) -> None:
        self.schema = schema
        # psycopg prepares a statement after a few executions; a transaction-pooling PgBouncer
        # (before 1.21) cannot follow prepared statements across server connections, so by
        # default nothing is prepared. Pass prepare=None on a direct connection to let psycopg
        # decide.
        self.prepare = prepare



class Barriers(_Api):
    """pg_barrier's functions on a synchronous psycopg connection::

        with psycopg.connect(dsn, autocommit=True) as conn:
            barriers = Barriers(conn)
            barriers.enqueue("report-42", 3, callback={"task": "merge"})
            answer = barriers.report("report-42", {"rows": 10}, slot=0)
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        *,
        schema: Optional[str] = None,
        prepare: Optional[bool] = False,
    ) -> None:
        super().__init__(schema, prepare)
        self.conn = conn

    def _run(self, call: Call[Answer]) -> Answer:
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(call.query, call.params, prepare=self.prepare)
                rows = Rows(cursor.fetchall(), _columns(cursor.description))
        except psycopg.Error as error:
            mapped = translate(error)
            if mapped is error:
                raise
            raise mapped from error
        return call.answer(rows)

    def enqueue(
        self,
        id: str,
        expected: int,
        *,
        callback: Any = None,
        ttl: Optional[timedelta] = None,
        channel: Optional[str] = None,
        replace: bool = False,
        stall_timeout: Optional[timedelta] = None,
        max_failures: Optional[int] = None,
        need: Optional[int] = None,
        sealed: bool = True,
        on_expiry: OnExpiry = "discard",
        parent: Optional[str] = None,
        parent_slot: Optional[int] = None,
    ) -> EnqueueStatus:
        """Registers barrier ``id``, complete after ``expected`` reports (``barrier_enqueue``).

        The fan-in's shape (pg_barrier 0.4; each sent only when it differs from its default, so
        a call without them works against a 0.3 server too): ``max_failures`` (abort once more
        reports than this have failed), ``need`` (complete with the ``need``-th success, a
        quorum), ``sealed=False`` (an open barrier: ``add`` tasks, then ``seal``),
        ``on_expiry="deliver"`` (an expiry hands out what was reported), and ``parent`` with
        ``parent_slot`` (this barrier's end reports into that slot of that barrier)."""
        return self._run(
            _calls.enqueue(
                self.schema, id, expected, callback, ttl, channel, replace, stall_timeout,
                max_failures, need, sealed, on_expiry, parent, parent_slot,
            )
        )

    def report(
        self, id: str, result: Any = None, *, slot: Optional[int] = None, failed: bool = False
    ) -> Report:
        """One task's report with its result (``barrier_decr``); pass the task's ``slot`` so a
        redelivered task answers ``DUPLICATE`` instead of counting twice.

        ``failed=True`` reports the task failed, with ``result`` as its error: it counts toward
        completion (``COMPLETE_WITH_FAILURES``) under the barrier's ``max_failures`` and
        ``need``. A failed slot reporting again with ``failed=False`` (the retry succeeded)
        replaces the failure while the barrier is pending."""
        return self._run(_calls.report(self.schema, id, result, slot, failed))

    def seal(self, id: str) -> Report:
        """Seals an open barrier (``barrier_seal``): answers the completion if every report is in
        (or the quorum is met), ``PENDING`` otherwise (and for a barrier sealed already),
        ``ABORTED`` if its quorum can no longer be reached. Raises ``UnknownBarrier`` for an
        unknown id and ``BarrierFinished`` for a finished barrier."""
        return self._run(_calls.seal(self.schema, id))

    def pending_slots(
        self, id: str, max_rows: int = 1000, after: Optional[int] = None
    ) -> list[int]:
        """Up to ``max_rows`` slots of a pending barrier that have not reported, ascending,
        above ``after`` (page on with the last slot seen; for a barrier counted without slots,
        the arrival positions still to come); ``[]`` for a finished one. Raises
        ``UnknownBarrier`` for an unknown id."""
        return self._run(_calls.pending_slots(self.schema, id, max_rows, after))

    def abort(self, id: str, reason: Optional[str] = None) -> AbortStatus:
        """Aborts a live barrier (``barrier_abort``)."""
        return self._run(_calls.abort(self.schema, id, reason))

    def add(self, id: str, extra: int) -> int:
        """Adds ``extra`` tasks to a pending barrier; answers the new ``expected``."""
        return self._run(_calls.add(self.schema, id, extra))

    def status(self, id: str) -> Optional[BarrierStatus]:
        """The barrier's state, or None if there is no such barrier."""
        return self._run(_calls.status(self.schema, id))

    def results(self, id: str) -> Optional[list[Any]]:
        """The results recorded so far in this round, in slot (or arrival) order."""
        return self._run(_calls.results(self.schema, id))

    def take(self, id: str) -> Optional[Taken]:
        """The completion of a complete barrier, handed out once: None if it is not complete or
        was taken already. Locks the barrier until the transaction ends."""
        return self._run(_calls.take(self.schema, id))

    def completions(self, channel: Optional[str] = None, max_rows: int = 100) -> list[Completion]:
        """Claims up to ``max_rows`` untaken completions (on ``channel``, or any), oldest first.
        Call it in the transaction that acts on them: on rollback they are listed again."""
        return self._run(_calls.completions(self.schema, channel, max_rows))

    def sweep(self, max_rows: int = 10000) -> Sweep:
        """One bounded round of housekeeping (``barrier_sweep``)."""
        return self._run(_calls.sweep(self.schema, max_rows))

    def stats(self) -> Stats:
        """Counts for dashboards and alerts (``barrier_stats``)."""
        return self._run(_calls.stats(self.schema))


class AsyncBarriers(_Api):
    """pg_barrier's functions on a psycopg ``AsyncConnection``; the same calls as
    :class:`Barriers`, awaited."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        *,
        schema: Optional[str] = None,
        prepare: Optional[bool] = False,
    ) -> None:
        super().__init__(schema, prepare)
        self.conn = conn

    async def _run(self, call: Call[Answer]) -> Answer:
        try:
            async with self.conn.cursor() as cursor:
                await cursor.execute(call.query, call.params, prepare=self.prepare)
                rows = Rows(await cursor.fetchall(), _columns(cursor.description))
        except psycopg.Error as error:
            mapped = translate(error)
            if mapped is error:
                raise
            raise mapped from error
        return call.answer(rows)

    async def enqueue(
        self,
        id: str,
        expected: int,
        *,
        callback: Any = None,
        ttl: Optional[timedelta] = None,
        channel: Optional[str] = None,
        replace: bool = False,
        stall_timeout: Optional[timedelta] = None,
        max_failures: Optional[int] = None,
        need: Optional[int] = None,
        sealed: bool = True,
        on_expiry: OnExpiry = "discard",
        parent: Optional[str] = None,
        parent_slot: Optional[int] = None,
    ) -> EnqueueStatus:
        return await self._run(
            _calls.enqueue(
                self.schema, id, expected, callback, ttl, channel, replace, stall_timeout,
                max_failures, need, sealed, on_expiry, parent, parent_slot,
            )
        )

    async def report(
        self, id: str, result: Any = None, *, slot: Optional[int] = None, failed: bool = False
    ) -> Report:
        return await self._run(_calls.report(self.schema, id, result, slot, failed))

    async def seal(self, id: str) -> Report:
        return await self._run(_calls.seal(self.schema, id))

    async def pending_slots(
        self, id: str, max_rows: int = 1000, after: Optional[int] = None
    ) -> list[int]:
        return await self._run(_calls.pending_slots(self.schema, id, max_rows, after))

    async def abort(self, id: str, reason: Optional[str] = None) -> AbortStatus:
        return await self._run(_calls.abort(self.schema, id, reason))

    async def add(self, id: str, extra: int) -> int:
        return await self._run(_calls.add(self.schema, id, extra))

    async def status(self, id: str) -> Optional[BarrierStatus]:
        return await self._run(_calls.status(self.schema, id))

    async def results(self, id: str) -> Optional[list[Any]]:
        return await self._run(_calls.results(self.schema, id))

    async def take(self, id: str) -> Optional[Taken]:
        return await self._run(_calls.take(self.schema, id))

    async def completions(
        self, channel: Optional[str] = None, max_rows: int = 100
    ) -> list[Completion]:
        return await self._run(_calls.completions(self.schema, channel, max_rows))

    async def sweep(self, max_rows: int = 10000) -> Sweep:
        return await self._run(_calls.sweep(self.schema, max_rows))

    async def stats(self) -> Stats:
        return await self._run(_calls.stats(self.schema))
