"""pg_barrier 0.4's fan-in shapes through the client (docs/shapes.md): failed reports and
re-arm, max_failures, quorum, open barriers and seal, pending_slots, delivered expiry, nested
barriers, their errors and the new answer fields; sync and asyncio."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import psycopg
import pytest

from pg_barrier import (
    AbortStatus,
    AsyncBarriers,
    BarrierConflict,
    BarrierFinished,
    Barriers,
    CompletionStatus,
    EnqueueStatus,
    InvalidArgument,
    LimitExceeded,
    NestingError,
    NotOwner,
    Notification,
    ReportStatus,
    State,
    UnknownBarrier,
)


def test_a_plain_completion_has_empty_failure_fields(barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 2, callback="cb")
    first = barriers.report(id, "a", slot=0)
    assert (first.failed_slots, first.errors, first.missing_slots) == (None, None, None)
    last = barriers.report(id, "b", slot=1)
    assert last.status is ReportStatus.COMPLETE and last.completed
    assert (last.results, last.failed_slots, last.errors, last.missing_slots) == (
        ["a", "b"], [], [], [],
    )
    state = barriers.status(id)
    assert state is not None
    assert (state.status, state.failed, state.sealed, state.need) == (State.COMPLETE, 0, True, None)
    taken = barriers.take(id)
    assert taken is not None
    assert (taken.status, taken.results, taken.callback) == (CompletionStatus.COMPLETE, ["a", "b"], "cb")
    assert (taken.failed_slots, taken.errors, taken.missing_slots) == ([], [], [])


def test_failed_reports_complete_with_failures_and_a_failed_slot_re_arms(barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 3, callback={"task": "merge"})
    assert barriers.report(id, "r0", slot=0).remaining == 2
    failed = barriers.report(id, {"error": "boom"}, slot=1, failed=True)
    assert (failed.status, failed.remaining) == (ReportStatus.PENDING, 1)
    state = barriers.status(id)
    assert state is not None and state.failed == 1
    assert barriers.results(id) == ["r0", None]  # a failed slot's result is not a result

    # A second failure of a failed slot changes nothing.
    again = barriers.report(id, {"error": "again"}, slot=1, failed=True)
    assert (again.status, again.remaining) == (ReportStatus.DUPLICATE, 1)
    # The retry succeeded: the success replaces the failure and is not counted twice.
    re_armed = barriers.report(id, "r1", slot=1)
    assert (re_armed.status, re_armed.remaining) == (ReportStatus.PENDING, 1)
    state = barriers.status(id)
    assert state is not None and state.failed == 0
    assert barriers.report(id, "r1 again", slot=1).status is ReportStatus.DUPLICATE

    last = barriers.report(id, {"error": "late"}, slot=2, failed=True)
    assert last.status is ReportStatus.COMPLETE_WITH_FAILURES and last.completed
    assert last.remaining == 0
    assert last.results == ["r0", "r1", None]
    assert (last.failed_slots, last.errors, last.missing_slots) == ([2], [{"error": "late"}], [])
    assert last.callback == {"task": "merge"}
    assert barriers.report(id, "r2", slot=2).status is ReportStatus.DUPLICATE

    state = barriers.status(id)
    assert state is not None
    assert (state.status, state.failed, state.remaining) == (State.COMPLETE_WITH_FAILURES, 1, 0)
    assert state.status.finished
    taken = barriers.take(id)
    assert taken is not None
    assert taken.status is CompletionStatus.COMPLETE_WITH_FAILURES
    assert (taken.results, taken.failed_slots, taken.errors, taken.missing_slots) == (
        ["r0", "r1", None], [2], [{"error": "late"}], [],
    )


def test_max_failures_aborts_on_one_failure_too_many(barriers, new_id):
    fail_fast = new_id()
    barriers.enqueue(fail_fast, 3, max_failures=0)
    answer = barriers.report(fail_fast, "timeout", slot=0, failed=True)
    assert (answer.status, answer.remaining) == (ReportStatus.ABORTED, 2)
    state = barriers.status(fail_fast)
    assert state is not None and state.status is State.ABORTED
    assert state.reason == "slot 0 failed: more than 0 failures"

    id = new_id()
    barriers.enqueue(id, 3, max_failures=1)
    assert barriers.report(id, "e0", slot=0, failed=True).status is ReportStatus.PENDING
    assert barriers.report(id, "ok", slot=0).status is ReportStatus.PENDING  # re-armed
    assert barriers.report(id, "e1", slot=1, failed=True).status is ReportStatus.PENDING
    answer = barriers.report(id, "e2", slot=2, failed=True)
    assert (answer.status, answer.remaining) == (ReportStatus.ABORTED, 0)
    state = barriers.status(id)
    assert state is not None and state.reason == "slot 2 failed: more than 1 failures"
    assert barriers.take(id) is None


def test_a_quorum_completes_early_and_aborts_when_out_of_reach(barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 4, callback="cb", need=2)
    state = barriers.status(id)
    assert state is not None and state.need == 2
    assert barriers.report(id, "c", slot=3).remaining == 3
    met = barriers.report(id, "a", slot=1)
    assert (met.status, met.remaining) == (ReportStatus.COMPLETE, 2)
    assert met.results == [None, "a", None, "c"]
    assert (met.failed_slots, met.errors, met.missing_slots) == ([], [], [0, 2])
    assert met.callback == "cb"
    assert barriers.report(id, "late", slot=0).status is ReportStatus.ALREADY_COMPLETE
    assert barriers.report(id, "again", slot=1).status is ReportStatus.DUPLICATE
    taken = barriers.take(id)
    assert taken is not None and taken.missing_slots == [0, 2]
    assert taken.status is CompletionStatus.COMPLETE

    with_failure = new_id()
    barriers.enqueue(with_failure, 3, need=2)
    barriers.report(with_failure, "e", slot=0, failed=True)
    barriers.report(with_failure, "b", slot=1)
    met = barriers.report(with_failure, "c", slot=2)
    assert met.status is ReportStatus.COMPLETE_WITH_FAILURES
    assert (met.results, met.failed_slots, met.errors, met.missing_slots) == (
        [None, "b", "c"], [0], ["e"], [],
    )

    lost = new_id()
    barriers.enqueue(lost, 3, need=2)
    assert barriers.report(lost, "e0", slot=0, failed=True).status is ReportStatus.PENDING
    answer = barriers.report(lost, "e1", slot=1, failed=True)
    assert (answer.status, answer.remaining) == (ReportStatus.ABORTED, 1)
    state = barriers.status(lost)
    assert state is not None and state.reason == "quorum of 2 can no longer be reached"


def test_an_open_barrier_completes_when_sealed(barriers, new_id):
    id = new_id()
    assert barriers.enqueue(id, 0, callback="cb", sealed=False) is EnqueueStatus.PENDING
    state = barriers.status(id)
    assert state is not None and (state.status, state.sealed, state.expected) == (
        State.PENDING, False, 0,
    )
    assert barriers.pending_slots(id) == []
    assert barriers.add(id, 2) == 2
    assert barriers.pending_slots(id) == [0, 1]
    assert barriers.report(id, "b", slot=1).remaining == 1
    assert barriers.pending_slots(id) == [0]
    # Nothing remains, but an open barrier does not complete before it is sealed.
    answer = barriers.report(id, "a", slot=0)
    assert (answer.status, answer.remaining) == (ReportStatus.PENDING, 0)
    assert barriers.pending_slots(id) == []
    state = barriers.status(id)
    assert state is not None and state.status is State.PENDING
    sealed = barriers.seal(id)
    assert (sealed.status, sealed.remaining, sealed.results, sealed.callback) == (
        ReportStatus.COMPLETE, 0, ["a", "b"], "cb",
    )
    assert (sealed.failed_slots, sealed.errors, sealed.missing_slots) == ([], [], [])
    state = barriers.status(id)
    assert state is not None and (state.status, state.sealed) == (State.COMPLETE, True)
    with pytest.raises(BarrierFinished) as finished:
        barriers.seal(id)
    assert finished.value.sqlstate == "55000"
    assert barriers.pending_slots(id) == []

    # Sealed with reports still to come: pending, and sealing again changes nothing.
    later = new_id()
    barriers.enqueue(later, 2, sealed=False)
    assert (barriers.seal(later).status, barriers.seal(later).remaining) == (ReportStatus.PENDING, 2)
    barriers.report(later, 0, slot=0)
    assert barriers.report(later, 1, slot=1).status is ReportStatus.COMPLETE

    # A barrier enqueued sealed: sealing is a no-op.
    plain = new_id()
    barriers.enqueue(plain, 1)
    answer = barriers.seal(plain)
    assert (answer.status, answer.remaining, answer.results) == (ReportStatus.PENDING, 1, None)

    # Sealing a quorum that can no longer be reached aborts it.
    quorum = new_id()
    barriers.enqueue(quorum, 2, need=2, sealed=False)
    assert barriers.report(quorum, "e", slot=0, failed=True).status is ReportStatus.PENDING
    assert barriers.seal(quorum).status is ReportStatus.ABORTED
    state = barriers.status(quorum)
    assert state is not None and state.status is State.ABORTED

    with pytest.raises(UnknownBarrier) as unknown:
        barriers.seal(new_id())
    assert unknown.value.sqlstate == "42704"


def test_pending_slots(barriers, new_id, other_dsn):
    id = new_id()
    barriers.enqueue(id, 4)
    assert barriers.pending_slots(id) == [0, 1, 2, 3]
    barriers.report(id, None, slot=2)
    barriers.report(id, None, slot=0, failed=True)  # a failed slot has reported
    assert barriers.pending_slots(id) == [1, 3]
    assert barriers.pending_slots(id, max_rows=1) == [1]  # a page
    assert barriers.pending_slots(id, max_rows=1, after=1) == [3]  # and the next

    unslotted = new_id()
    barriers.enqueue(unslotted, 3)
    barriers.report(unslotted, "first")
    assert barriers.pending_slots(unslotted) == [1, 2]  # the arrival positions to come

    aborted = new_id()
    barriers.enqueue(aborted, 2)
    barriers.abort(aborted)
    assert barriers.pending_slots(aborted) == []

    with pytest.raises(UnknownBarrier):
        barriers.pending_slots(new_id())
    with psycopg.connect(other_dsn, autocommit=True) as other:
        with pytest.raises(NotOwner):
            Barriers(other).pending_slots(id)
        with pytest.raises(NotOwner):
            Barriers(other).seal(id)


def test_an_expiry_that_delivers_hands_out_what_was_reported(barriers, new_id, new_channel):
    id = new_id()
    barriers.enqueue(id, 3, callback="cb", ttl=timedelta(seconds=1), on_expiry="deliver")
    barriers.report(id, "a", slot=0)
    barriers.report(id, {"error": "x"}, slot=2, failed=True)
    time.sleep(1.2)
    taken = barriers.take(id)  # expires it, and hands out the delivery
    assert taken is not None
    assert (taken.status, taken.results, taken.callback) == (
        CompletionStatus.EXPIRED, ["a", None, None], "cb",
    )
    assert (taken.failed_slots, taken.errors, taken.missing_slots) == ([2], [{"error": "x"}], [1])
    assert barriers.take(id) is None
    state = barriers.status(id)
    assert state is not None and state.status is State.EXPIRED

    # Claimed with barrier_completions once an expiry (here the sweep's) has stored it.
    channel = new_channel()
    claimed_id = new_id()
    barriers.enqueue(claimed_id, 2, channel=channel, ttl=timedelta(seconds=1), on_expiry="deliver")
    barriers.report(claimed_id, "only", slot=0)
    time.sleep(1.2)
    assert barriers.sweep(10000).expired >= 1
    (completion,) = barriers.completions(channel)
    assert (completion.id, completion.status, completion.results, completion.missing_slots) == (
        claimed_id, CompletionStatus.EXPIRED, ["only", None], [1],
    )

    # The default discards, as in 0.3.
    discarded = new_id()
    barriers.enqueue(discarded, 2, ttl=timedelta(seconds=1))
    barriers.report(discarded, "gone", slot=0)
    time.sleep(1.2)
    assert barriers.take(discarded) is None


def test_children_report_into_their_parents_slots(barriers, new_id):
    parent = new_id()
    barriers.enqueue(parent, 2, callback="merge")
    left, right = new_id(), new_id()
    barriers.enqueue(left, 2, parent=parent, parent_slot=0)
    barriers.enqueue(right, 1, parent=parent, parent_slot=1)
    assert barriers.pending_slots(parent) == [0, 1]

    barriers.report(left, "l0", slot=0)
    done = barriers.report(left, "l1", slot=1)
    assert done.status is ReportStatus.COMPLETE and done.results == ["l0", "l1"]
    # The parent took the child's completion into its slot 0: the child is handed over.
    assert barriers.take(left) is None
    assert barriers.pending_slots(parent) == [1]
    state = barriers.status(parent)
    assert state is not None and (state.status, state.remaining) == (State.PENDING, 1)

    # The right child completes with a failure: a failed report into the parent, whose round
    # ends in the same transaction.
    ended = barriers.report(right, {"error": "x"}, slot=0, failed=True)
    assert ended.status is ReportStatus.COMPLETE_WITH_FAILURES
    state = barriers.status(parent)
    assert state is not None and state.status is State.COMPLETE_WITH_FAILURES
    assert barriers.take(right) is None
    taken = barriers.take(parent)
    assert taken is not None and taken.callback == "merge"
    assert taken.status is CompletionStatus.COMPLETE_WITH_FAILURES
    assert taken.results == [
        {
            "id": left, "round": 1, "status": "complete", "results": ["l0", "l1"],
            "failed_slots": [], "errors": [], "missing_slots": [],
        },
        None,
    ]
    assert taken.failed_slots == [1] and taken.missing_slots == []
    (error,) = taken.errors
    assert (error["id"], error["status"], error["failed_slots"], error["errors"]) == (
        right, "complete_with_failures", [0], [{"error": "x"}],
    )


def test_a_child_enqueued_again_re_arms_its_parents_slot(barriers, new_id):
    parent = new_id()
    barriers.enqueue(parent, 2)
    child = new_id()
    barriers.enqueue(child, 1, parent=parent, parent_slot=0)
    assert barriers.abort(child, "first try failed") is AbortStatus.ABORTED
    state = barriers.status(parent)
    assert state is not None and (state.remaining, state.failed) == (1, 1)

    # The child's next round, into the same slot: its completion replaces the failure.
    assert barriers.enqueue(child, 1, parent=parent, parent_slot=0) is EnqueueStatus.PENDING
    assert barriers.report(child, "ok", slot=0).status is ReportStatus.COMPLETE
    state = barriers.status(parent)
    assert state is not None and (state.remaining, state.failed) == (1, 0)
    last = barriers.report(parent, "direct", slot=1)
    assert last.status is ReportStatus.COMPLETE
    assert last.results is not None and last.results[1] == "direct"
    assert (last.results[0]["id"], last.results[0]["round"], last.results[0]["status"]) == (
        child, 2, "complete",
    )


def test_nesting_errors_map_to_classes(barriers, new_id, other_dsn):
    parent = new_id()
    barriers.enqueue(parent, 2)

    itself = new_id()
    with pytest.raises(NestingError) as cycle:
        barriers.enqueue(itself, 1, parent=itself, parent_slot=0)
    assert cycle.value.sqlstate == "42P19"
    assert barriers.status(itself) is None  # the error changed nothing

    with pytest.raises(UnknownBarrier) as unknown:
        barriers.enqueue(new_id(), 1, parent=new_id(), parent_slot=0)
    assert unknown.value.sqlstate == "42704"

    finished = new_id()
    barriers.enqueue(finished, 0)
    with pytest.raises(BarrierFinished) as not_pending:
        barriers.enqueue(new_id(), 1, parent=finished, parent_slot=0)
    assert not_pending.value.sqlstate == "55000"

    with pytest.raises(InvalidArgument) as out_of_range:
        barriers.enqueue(new_id(), 1, parent=parent, parent_slot=2)
    assert out_of_range.value.sqlstate == "22023"
    with pytest.raises(InvalidArgument) as alone:
        barriers.enqueue(new_id(), 1, parent_slot=0)
    assert alone.value.sqlstate == "22023"
    with pytest.raises(InvalidArgument):
        barriers.enqueue(new_id(), 1, parent=parent)

    barriers.enqueue(new_id(), 1, parent=parent, parent_slot=0)
    with pytest.raises(BarrierConflict) as taken:
        barriers.enqueue(new_id(), 1, parent=parent, parent_slot=0)
    assert taken.value.sqlstate == "42710"
    barriers.report(parent, "reported", slot=1)
    with pytest.raises(BarrierConflict):
        barriers.enqueue(new_id(), 1, parent=parent, parent_slot=1)

    with psycopg.connect(other_dsn, autocommit=True) as other:
        with pytest.raises(NotOwner) as not_owner:
            Barriers(other).enqueue(new_id(), 1, parent=parent, parent_slot=0)
        assert not_owner.value.sqlstate == "42501"

    # A root and 16 levels below it are allowed; a 17th is not.
    chain = [new_id()]
    barriers.enqueue(chain[0], 1)
    for _ in range(16):
        chain.append(new_id())
        barriers.enqueue(chain[-1], 1, parent=chain[-2], parent_slot=0)
    too_deep = new_id()
    with pytest.raises(LimitExceeded) as depth:
        barriers.enqueue(too_deep, 1, parent=chain[-1], parent_slot=0)
    assert depth.value.sqlstate == "54001"
    assert barriers.status(too_deep) is None


def test_the_shape_arguments_are_checked(barriers, new_id):
    def refused(sqlstate: str, **arguments) -> None:
        id = new_id()
        with pytest.raises(InvalidArgument) as error:
            barriers.enqueue(id, 2, **arguments)
        assert error.value.sqlstate == sqlstate, error.value
        assert barriers.status(id) is None

    refused("22023", max_failures=-1)
    refused("22023", need=0)
    refused("22023", need=3)  # more than expected, on a sealed barrier
    refused("22004", sealed=None)
    refused("22023", on_expiry="keep")
    refused("22004", on_expiry=None)
    refused("22023", parent="", parent_slot=0)
    refused("22001", parent="p" * 513, parent_slot=0)
    refused("22023", parent="p", parent_slot=-1)
    # An open barrier may need more than it expects now: tasks are added later.
    assert barriers.enqueue(new_id(), 2, need=3, sealed=False) is EnqueueStatus.PENDING

    id = new_id()
    barriers.enqueue(id, 2)
    with pytest.raises(InvalidArgument) as null:
        barriers.report(id, "x", slot=0, failed=None)  # type: ignore[arg-type]
    assert null.value.sqlstate == "22004"


def test_a_re_enqueue_compares_the_shape_but_not_sealing(barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 2, need=1, max_failures=1)
    assert barriers.enqueue(id, 2, need=1, max_failures=1) is EnqueueStatus.PENDING
    with pytest.raises(BarrierConflict) as conflict:
        barriers.enqueue(id, 2, need=2, max_failures=1)
    assert "need differs" in (conflict.value.detail or "")
    with pytest.raises(BarrierConflict) as conflict:
        barriers.enqueue(id, 2, need=1, max_failures=1, on_expiry="deliver")
    assert "on_expiry differs" in (conflict.value.detail or "")
    # sealed is not compared, and a re-enqueue leaves a live barrier's sealing as it is.
    assert barriers.enqueue(id, 2, need=1, max_failures=1, sealed=False) is EnqueueStatus.PENDING
    state = barriers.status(id)
    assert state is not None and state.sealed
    # replace starts a round with the new shape.
    barriers.enqueue(id, 3, need=2, sealed=False, replace=True)
    state = barriers.status(id)
    assert state is not None and (state.expected, state.need, state.sealed) == (3, 2, False)


def test_the_notification_of_a_completion_with_failures(dsn, barriers, new_id, new_channel):
    channel = new_channel()
    id = new_id()
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        barriers.enqueue(id, 1, channel=channel)
        barriers.report(id, "e", slot=0, failed=True)
        notes = list(listener.notifies(timeout=10, stop_after=1))
    assert len(notes) == 1
    assert Notification.parse(notes[0].payload) == Notification(id, State.COMPLETE_WITH_FAILURES, 1)


def test_the_shapes_on_the_asyncio_client(dsn, new_id):
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            barriers = AsyncBarriers(conn)
            id = new_id()
            await barriers.enqueue(id, 2, sealed=False, max_failures=1, need=1)
            assert await barriers.pending_slots(id) == [0, 1]
            failed = await barriers.report(id, "e", slot=0, failed=True)
            assert failed.status is ReportStatus.PENDING
            answer = await barriers.report(id, "ok", slot=1)
            assert (answer.status, answer.remaining) == (ReportStatus.PENDING, 0)  # open
            sealed = await barriers.seal(id)
            assert sealed.status is ReportStatus.COMPLETE_WITH_FAILURES
            assert (sealed.results, sealed.failed_slots, sealed.errors) == ([None, "ok"], [0], ["e"])
            state = await barriers.status(id)
            assert state is not None and (state.failed, state.sealed, state.need) == (1, True, 1)
            taken = await barriers.take(id)
            assert taken is not None and taken.status is CompletionStatus.COMPLETE_WITH_FAILURES
            with pytest.raises(BarrierFinished):
                await barriers.seal(id)

    asyncio.run(scenario())
