"""Every call's typed answer and every error class, on a direct connection, sync and asyncio."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime, timedelta

import psycopg
import pytest

from pg_barrier import (
    AbortStatus,
    AsyncBarriers,
    BarrierConflict,
    BarrierFinished,
    Barriers,
    EnqueueStatus,
    InvalidArgument,
    LimitExceeded,
    NotOwner,
    Notification,
    ReadOnly,
    ReportStatus,
    SerializationFailure,
    State,
    UnknownBarrier,
)


def test_a_fan_in_completes_once_with_results_in_slot_order(barriers, new_id):
    id = new_id()
    assert barriers.enqueue(id, 3, callback={"task": "merge"}) is EnqueueStatus.PENDING
    first = barriers.report(id, {"rows": 10}, slot=0)
    assert (first.status, first.remaining, first.results, first.callback) == (
        ReportStatus.PENDING,
        2,
        None,
        None,
    )
    assert not first.completed
    assert barriers.report(id, {"rows": 7}, slot=2).remaining == 1
    last = barriers.report(id, {"rows": 12}, slot=1)
    assert last.completed and last.status is ReportStatus.COMPLETE
    assert last.remaining == 0
    assert last.results == [{"rows": 10}, {"rows": 12}, {"rows": 7}]
    assert last.callback == {"task": "merge"}


def test_every_report_status(barriers, new_id):
    slotted = new_id()
    barriers.enqueue(slotted, 1)
    assert barriers.report(slotted, "a", slot=0).status is ReportStatus.COMPLETE
    # A redelivered slot after completion changes nothing.
    again = barriers.report(slotted, "b", slot=0)
    assert (again.status, again.remaining) == (ReportStatus.DUPLICATE, 0)

    unslotted = new_id()
    barriers.enqueue(unslotted, 1)
    assert barriers.report(unslotted, None).status is ReportStatus.COMPLETE
    assert barriers.report(unslotted, None).status is ReportStatus.ALREADY_COMPLETE

    aborted = new_id()
    barriers.enqueue(aborted, 2)
    barriers.report(aborted, 1, slot=0)
    assert barriers.abort(aborted, "stop") is AbortStatus.ABORTED
    answer = barriers.report(aborted, 2, slot=1)
    assert (answer.status, answer.remaining) == (ReportStatus.ABORTED, 1)

    expired = new_id()
    barriers.enqueue(expired, 2, ttl=timedelta(seconds=1))
    time.sleep(1.2)
    assert barriers.report(expired, 1, slot=0).status is ReportStatus.EXPIRED

    unknown = barriers.report(new_id(), 1, slot=0)
    assert (unknown.status, unknown.remaining) == (ReportStatus.UNKNOWN, None)


def test_every_abort_status(barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 1)
    assert barriers.abort(id, "first") is AbortStatus.ABORTED
    assert barriers.abort(id) is AbortStatus.ALREADY_ABORTED
    done = new_id()
    barriers.enqueue(done, 0)
    assert barriers.abort(done) is AbortStatus.ALREADY_COMPLETE
    expired = new_id()
    barriers.enqueue(expired, 1, ttl=timedelta(seconds=1))
    time.sleep(1.2)
    assert barriers.abort(expired) is AbortStatus.EXPIRED
    assert barriers.abort(new_id()) is AbortStatus.UNKNOWN


def test_status_results_add_take(barriers, new_id):
    id = new_id()
    assert barriers.status(id) is None
    assert barriers.results(id) is None
    barriers.enqueue(id, 2, callback=["x"], channel="client_status", ttl=timedelta(hours=1))
    state = barriers.status(id)
    assert state is not None
    assert (state.id, state.status, state.expected, state.remaining) == (id, State.PENDING, 2, 2)
    assert (state.channel, state.callback, state.reason, state.round) == (
        "client_status",
        ["x"],
        None,
        1,
    )
    assert isinstance(state.created_at, datetime) and state.finished_at is None
    assert timedelta(minutes=59) < state.expires_at - state.created_at <= timedelta(hours=1)
    assert barriers.add(id, 2) == 4
    barriers.report(id, "s1", slot=1)
    assert barriers.results(id) == ["s1"]
    assert barriers.take(id) is None  # not complete yet
    for slot in (0, 2, 3):
        barriers.report(id, f"s{slot}", slot=slot)
    state = barriers.status(id)
    assert state is not None and state.status is State.COMPLETE and state.finished_at is not None
    assert barriers.results(id) == ["s0", "s1", "s2", "s3"]
    taken = barriers.take(id)
    assert taken is not None
    assert (taken.results, taken.callback) == (["s0", "s1", "s2", "s3"], ["x"])
    assert barriers.take(id) is None  # handed out once
    assert barriers.results(id) is None


def test_completions_sweep_stats(barriers, new_id, new_channel):
    channel = new_channel()
    ids = [new_id() for _ in range(3)]
    for id in ids:
        barriers.enqueue(id, 1, callback={"id": id}, channel=channel)
        barriers.report(id, id, slot=0)
    stats = barriers.stats()
    assert stats.untaken >= 3 and stats.complete >= 3
    assert isinstance(stats.result_bytes, int)
    claimed = barriers.completions(channel, 2)
    assert [c.id for c in claimed] == ids[:2]  # oldest first
    assert [c.results for c in claimed] == [[ids[0]], [ids[1]]]
    assert claimed[0].callback == {"id": ids[0]} and isinstance(claimed[0].finished_at, datetime)
    assert [c.id for c in barriers.completions(channel)] == ids[2:]
    assert barriers.completions(channel) == []
    # No sweeper runs on the test servers: this call expires the barrier past its ttl.
    expiring = new_id()
    barriers.enqueue(expiring, 1, ttl=timedelta(seconds=1))
    time.sleep(1.2)
    swept = barriers.sweep(10000)
    assert swept.expired >= 1 and swept.deleted >= 0
    assert barriers.status(expiring).status is State.EXPIRED


def test_a_rolled_back_report_never_happened(conn, barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 1)
    with pytest.raises(RuntimeError):
        with conn.transaction():
            assert barriers.report(id, "lost", slot=0).completed
            raise RuntimeError("the task's other writes failed")
    state = barriers.status(id)
    assert state is not None and state.status is State.PENDING and state.remaining == 1
    assert barriers.report(id, "kept", slot=0).results == ["kept"]


def test_errors_map_to_classes(barriers, new_id, other_dsn):
    id = new_id()
    barriers.enqueue(id, 2)
    with pytest.raises(BarrierConflict) as conflict:
        barriers.enqueue(id, 3)
    assert conflict.value.sqlstate == "42710" and "replace" in (conflict.value.hint or "")
    assert isinstance(conflict.value.__cause__, psycopg.Error)
    assert barriers.enqueue(id, 3, replace=True) is EnqueueStatus.PENDING

    with pytest.raises(InvalidArgument) as out_of_range:
        barriers.report(id, 1, slot=3)
    assert out_of_range.value.sqlstate == "22023"
    with pytest.raises(InvalidArgument) as empty:
        barriers.enqueue("", 1)
    assert empty.value.sqlstate == "22023"
    with pytest.raises(InvalidArgument) as null:
        barriers.enqueue(new_id(), None)  # type: ignore[arg-type]
    assert null.value.sqlstate == "22004"
    with pytest.raises(InvalidArgument) as too_long:
        barriers.enqueue("x" * 513, 1)
    assert too_long.value.sqlstate == "22001"
    with pytest.raises(InvalidArgument):
        barriers.enqueue(new_id(), 1, channel="Not An Identifier")

    with pytest.raises(UnknownBarrier) as unknown:
        barriers.add(new_id(), 1)
    assert unknown.value.sqlstate == "42704"
    done = new_id()
    barriers.enqueue(done, 0)
    with pytest.raises(BarrierFinished) as finished:
        barriers.add(done, 1)
    assert finished.value.sqlstate == "55000"

    with pytest.raises(LimitExceeded) as limit:
        barriers.report(id, "x" * (1024 * 1024 + 1), slot=0)
    assert limit.value.sqlstate == "54000"

    with psycopg.connect(other_dsn, autocommit=True) as other:
        with pytest.raises(NotOwner) as not_owner:
            Barriers(other).report(id, 1, slot=0)
        assert not_owner.value.sqlstate == "42501"

    # Every error changed nothing.
    state = barriers.status(id)
    assert state is not None and (state.expected, state.remaining) == (3, 3)


def test_read_only_transactions_refuse_changes(dsn, new_id):
    with psycopg.connect(dsn) as conn:
        conn.read_only = True
        with pytest.raises(ReadOnly) as refused:
            Barriers(conn).enqueue(new_id(), 1)
        assert refused.value.sqlstate == "25006"


def test_repeatable_read_race_is_a_serialization_failure(dsn, barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 3)
    with psycopg.connect(dsn) as late:
        late.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        late.execute("SELECT 1")  # takes the snapshot
        barriers.report(id, "first", slot=0)  # commits after that snapshot
        with pytest.raises(SerializationFailure) as failure:
            Barriers(late).report(id, "second", slot=1)
        assert failure.value.sqlstate == "40001"
        late.rollback()
        assert Barriers(late).report(id, "second", slot=1).remaining == 1


def test_the_notification_payload_parses(dsn, barriers, new_id, new_channel):
    channel = new_channel()
    id = new_id()
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        barriers.enqueue(id, 1, channel=channel)
        barriers.report(id, None, slot=0)
        notes = list(listener.notifies(timeout=10, stop_after=1))
    assert len(notes) == 1
    assert Notification.parse(notes[0].payload) == Notification(id, State.COMPLETE, 1)
    assert json.loads(notes[0].payload).keys() == {"id", "status", "round"}


def test_sixteen_connections_race_to_one_completer(dsn, barriers, new_id):
    id = new_id()
    slots = 16 * 8
    barriers.enqueue(id, slots)
    answers = []
    lock = threading.Lock()

    def worker(start: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as own:
            mine = Barriers(own)
            for slot in range(start, slots, 16):
                # Each slot twice, as an at-least-once queue may deliver it.
                for _ in range(2):
                    answer = mine.report(id, {"slot": slot}, slot=slot)
                    with lock:
                        answers.append(answer)

    threads = [threading.Thread(target=worker, args=(start,)) for start in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    completers = [a for a in answers if a.completed]
    assert len(completers) == 1
    assert completers[0].results == [{"slot": slot} for slot in range(slots)]
    assert sum(a.status is ReportStatus.DUPLICATE for a in answers) == slots


def test_the_asyncio_client(dsn, new_id, other_dsn):
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            barriers = AsyncBarriers(conn)
            id = new_id()
            assert await barriers.enqueue(id, 2, callback={"next": 1}) is EnqueueStatus.PENDING
            reports = await asyncio.gather(
                *(self_report(dsn, id, slot) for slot in (1, 0))
            )
            assert sum(r.completed for r in reports) == 1
            assert (await barriers.status(id)).status is State.COMPLETE
            assert await barriers.results(id) == ["r0", "r1"]
            taken = await barriers.take(id)
            assert taken is not None and taken.callback == {"next": 1}
            assert await barriers.take(id) is None
            with pytest.raises(BarrierFinished):
                await barriers.add(id, 1)
            other = new_id()
            await barriers.enqueue(other, 1)
            assert await barriers.abort(other) is AbortStatus.ABORTED
            assert await barriers.completions("nothing_here") == []
            assert (await barriers.sweep(1)).expired >= 0
            assert (await barriers.stats()).complete >= 1
        async with await psycopg.AsyncConnection.connect(other_dsn, autocommit=True) as conn:
            with pytest.raises(NotOwner):
                await AsyncBarriers(conn).abort(id)

    async def self_report(dsn: str, id: str, slot: int):
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await AsyncBarriers(conn).report(id, f"r{slot}", slot=slot)

    asyncio.run(scenario())


def test_a_schema_qualifies_every_call(barriers, conn, new_id):
    schema = conn.execute(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_barrier'"
    ).fetchone()[0]
    qualified = Barriers(conn, schema=schema)
    id = new_id()
    conn.execute("SET search_path TO pg_catalog")
    try:
        assert qualified.enqueue(id, 1) is EnqueueStatus.PENDING
        assert qualified.report(id, 1, slot=0).completed
        with pytest.raises(psycopg.errors.UndefinedFunction):
            barriers.status(id)  # unqualified: not found on this search_path
    finally:
        conn.execute("RESET search_path")
