"""The waiter: wait() and the completions iterator, with LISTEN and without, across missed
notifications and lost connections; sync and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from pg_barrier import (
    AsyncWaiter,
    Barriers,
    CompletionStatus,
    State,
    UnknownBarrier,
    Waiter,
)

from conftest import eventually


def _later(seconds: float, action) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def _complete(dsn: str, id: str, slots: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        for slot in range(slots):
            barriers.report(id, slot, slot=slot)


def _abort(dsn: str, id: str, reason: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        Barriers(conn).abort(id, reason)


def _terminate(dsn: str, application_name: str) -> int:
    """Ends every backend of the given application_name (as the role that owns them) and waits
    until they are gone: pg_terminate_backend only signals."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000))"
            " FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()[0]
    return ended


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "poll"])
def test_wait_returns_the_finished_status(dsn, barriers, new_id, listen):
    id = new_id()
    barriers.enqueue(id, 2, callback="cb")
    with Waiter(dsn, listen=listen, poll_interval=0.2) as waiter:
        reporter = _later(0.5, lambda: _complete(dsn, id, 2))
        state = waiter.wait(id, timeout=20)
        reporter.join()
        assert (state.status, state.remaining, state.callback) == (State.COMPLETE, 0, "cb")

        aborted = new_id()
        barriers.enqueue(aborted, 1)
        aborter = _later(0.3, lambda: _abort(dsn, aborted, "why"))
        state = waiter.wait(aborted, timeout=20)
        aborter.join()
        assert (state.status, state.reason) == (State.ABORTED, "why")


def test_wait_times_out_on_a_pending_barrier_and_refuses_an_unknown_one(dsn, barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 1)
    with Waiter(dsn, poll_interval=0.1) as waiter:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            waiter.wait(id, timeout=0.5)
        assert time.monotonic() - started >= 0.5
        with pytest.raises(UnknownBarrier):
            waiter.wait(new_id(), timeout=1)


def test_a_notification_wakes_the_waiter_long_before_its_poll(dsn, barriers, new_id, new_channel):
    id = new_id()
    barriers.enqueue(id, 1, channel=new_channel())
    # With a 60 s poll, only the NOTIFY can end this wait within the 30 s timeout.
    with Waiter(dsn, listen=True, poll_interval=60) as waiter:
        reporter = _later(0.5, lambda: _complete(dsn, id, 1))
        assert waiter.wait(id, timeout=30).status is State.COMPLETE
        reporter.join()


def test_wait_survives_a_lost_connection(dsn, barriers, new_id):
    id = new_id()
    barriers.enqueue(id, 1)
    name = f"waiter-{id[-12:]}"
    with Waiter(dsn, poll_interval=0.2, reconnect_delay=0.1, application_name=name) as waiter:

        def kill_then_complete() -> None:
            eventually(lambda: _terminate(dsn, name), 10, "the waiter's backend")
            _complete(dsn, id, 1)

        helper = _later(0.3, kill_then_complete)
        assert waiter.wait(id, timeout=20).status is State.COMPLETE
        helper.join()


def _complete_many(dsn: str, ids: list[str], channel: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        for id in ids:
            barriers.enqueue(id, 1, callback={"for": id}, channel=channel)
            barriers.report(id, id, slot=0)


def test_completions_are_handed_out_once_across_consumers(dsn, new_id, new_channel):
    channel = new_channel()
    ids = [new_id() for _ in range(60)]
    _complete_many(dsn, ids[:20], channel)  # before any consumer: no notification to hear
    handed: list[str] = []
    lock = threading.Lock()

    def consume(listen: bool) -> None:
        with Waiter(dsn, listen=listen, poll_interval=0.2) as waiter:
            for completion in waiter.completions(channel, idle_timeout=3):
                assert completion.results == [completion.id]
                assert completion.callback == {"for": completion.id}
                with lock:
                    handed.append(completion.id)

    consumers = [threading.Thread(target=consume, args=(i % 2 == 0,)) for i in range(3)]
    for consumer in consumers:
        consumer.start()
    _complete_many(dsn, ids[20:], channel)
    for consumer in consumers:
        consumer.join()
    counts = Counter(handed)
    assert set(counts) == set(ids)
    assert max(counts.values()) == 1


def test_a_failed_handler_leaves_the_completion_to_be_handed_out_again(dsn, new_id, new_channel):
    channel = new_channel()
    ids = [new_id() for _ in range(3)]
    _complete_many(dsn, ids, channel)
    with Waiter(dsn, poll_interval=0.1) as waiter:
        with pytest.raises(RuntimeError):
            for completion in waiter.completions(channel):
                raise RuntimeError(f"handling {completion.id} failed")
        # Leaving the loop gives the current completion up too.
        stream = waiter.completions(channel)
        for completion in stream:
            assert completion.id == ids[0]
            break
        # (the generator is still referenced: the next call rolls its claim back)
        first_seen = []
        for completion in waiter.completions(channel, idle_timeout=1):
            first_seen.append(completion.id)
    assert first_seen == ids  # the failed one (the oldest) again, then the rest


def test_the_consumer_reconnects_and_loses_nothing(dsn, new_id, new_channel):
    channel = new_channel()
    ids = [new_id() for _ in range(10)]
    name = f"consumer-{channel[-12:]}"
    handed: list[str] = []
    with Waiter(dsn, poll_interval=0.2, reconnect_delay=0.1, application_name=name) as waiter:
        _complete_many(dsn, ids[:5], channel)
        for completion in waiter.completions(channel, idle_timeout=3):
            handed.append(completion.id)
            if len(handed) == 2:
                # The claim of this second completion is open: the kill rolls it back.
                assert _terminate(dsn, name) == 1
                _complete_many(dsn, ids[5:], channel)
    counts = Counter(handed)
    assert set(counts) == set(ids)
    # The one claimed when the connection died is handed out again; nothing else is.
    assert [id for id, n in counts.items() if n > 1] == [ids[1]]


def test_asyncio_consumers_poll_reconnect_and_share(dsn, new_id, new_channel):
    """Two asyncio consumers, one polling only, one whose backend is killed while it holds a
    claim: every completion is handed out, and only the one killed under its claim twice."""
    channel = new_channel()
    ids = [new_id() for _ in range(30)]
    name = f"async-{channel[-12:]}"
    handed: list[str] = []
    killed: list[str] = []

    async def consume(waiter: AsyncWaiter, victim: bool) -> None:
        async with waiter, contextlib.aclosing(waiter.completions(channel, idle_timeout=3)) as stream:
            async for completion in stream:
                handed.append(completion.id)
                if victim and not killed:
                    killed.append(completion.id)
                    await asyncio.get_running_loop().run_in_executor(None, _terminate, dsn, name)
                await asyncio.sleep(0.01)

    async def scenario() -> None:
        producer = asyncio.get_running_loop().run_in_executor(
            None, _complete_many, dsn, ids, channel
        )
        await asyncio.gather(
            consume(AsyncWaiter(dsn, listen=False, poll_interval=0.1), False),
            consume(
                AsyncWaiter(dsn, poll_interval=0.1, reconnect_delay=0.1, application_name=name),
                True,
            ),
            producer,
        )

    asyncio.run(scenario())
    counts = Counter(handed)
    assert set(counts) == set(ids)
    assert [id for id, n in counts.items() if n > 1] == killed


def test_the_asyncio_waiter(dsn, barriers, new_id, new_channel):
    channel = new_channel()
    id = new_id()
    barriers.enqueue(id, 1, channel=channel)
    others = [new_id() for _ in range(5)]

    async def scenario() -> list[str]:
        async with AsyncWaiter(dsn, poll_interval=0.2) as waiter:
            reporter = asyncio.get_running_loop().run_in_executor(
                None, lambda: (time.sleep(0.3), _complete(dsn, id, 1))
            )
            state = await waiter.wait(id, timeout=20)
            await reporter
            assert state.status is State.COMPLETE
            with pytest.raises(TimeoutError):
                pending = new_id()
                barriers.enqueue(pending, 1)
                await waiter.wait(pending, timeout=0.3)
            handed = []
            producer = asyncio.get_running_loop().run_in_executor(
                None, lambda: _complete_many(dsn, others, channel)
            )
            async with contextlib.aclosing(waiter.completions(channel, idle_timeout=2)) as stream:
                async for completion in stream:
                    handed.append(completion.id)
            await producer
            return handed

    handed = asyncio.run(scenario())
    # The first barrier is complete and untaken too: it is on the same channel.
    assert sorted(handed) == sorted([id, *others])


@pytest.mark.parametrize("listen", [True, False], ids=["listen", "poll"])
def test_wait_returns_a_completion_with_failures_and_waits_for_a_seal(dsn, barriers, new_id, listen):
    id = new_id()
    barriers.enqueue(id, 2)

    def report_with_a_failure() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            Barriers(conn).report(id, "ok", slot=0)
            Barriers(conn).report(id, {"error": "x"}, slot=1, failed=True)

    with Waiter(dsn, listen=listen, poll_interval=0.2) as waiter:
        reporter = _later(0.3, report_with_a_failure)
        state = waiter.wait(id, timeout=20)
        reporter.join()
        assert (state.status, state.failed, state.remaining) == (State.COMPLETE_WITH_FAILURES, 1, 0)

        # Every report in, but open: not finished until it is sealed.
        open_id = new_id()
        barriers.enqueue(open_id, 1, sealed=False)
        barriers.report(open_id, "only", slot=0)
        with pytest.raises(TimeoutError):
            waiter.wait(open_id, timeout=0.5)

        def seal() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                Barriers(conn).seal(open_id)

        sealer = _later(0.3, seal)
        state = waiter.wait(open_id, timeout=20)
        sealer.join()
        assert (state.status, state.sealed) == (State.COMPLETE, True)


def test_the_consumer_hands_out_completions_with_failures_and_delivered_expiries(
    dsn, barriers, new_id, new_channel
):
    channel = new_channel()
    failures, delivered = new_id(), new_id()
    barriers.enqueue(failures, 2, channel=channel)
    barriers.report(failures, "a", slot=0)
    barriers.report(failures, "e", slot=1, failed=True)
    barriers.enqueue(delivered, 2, channel=channel, ttl=timedelta(seconds=1), on_expiry="deliver")
    barriers.report(delivered, "b", slot=1)
    time.sleep(1.2)
    barriers.sweep(10000)  # stores the expiry: barrier_completions claims stored rows only
    handed = {}
    with Waiter(dsn, poll_interval=0.1) as waiter:
        for completion in waiter.completions(channel, idle_timeout=1):
            handed[completion.id] = completion
    assert set(handed) == {failures, delivered}
    first, second = handed[failures], handed[delivered]
    assert first.status is CompletionStatus.COMPLETE_WITH_FAILURES
    assert (first.results, first.failed_slots, first.errors) == (["a", None], [1], ["e"])
    assert second.status is CompletionStatus.EXPIRED
    assert (second.results, second.missing_slots) == ([None, "b"], [0])
