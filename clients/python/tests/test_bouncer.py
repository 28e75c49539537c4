"""Through PgBouncer in transaction-pooling mode: the calls, a 16-connection race and the
polling waiter, with exactly one completer and nothing lost. Transaction pooling hands each
transaction whichever server connection is free, so nothing may outlive a transaction: no
prepared statements (the client prepares none by default), no LISTEN, no session SET."""

from __future__ import annotations

import threading
from collections import Counter

import psycopg

from pg_barrier import Barriers, EnqueueStatus, ReportStatus, State, Waiter


def _pid(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def test_the_bouncer_multiplexes_transactions(bouncer_dsn):
    """The premise of this file: a client connection through PgBouncer is not tied to one server
    connection, so anything kept in a session (LISTEN, SET, a prepared statement) is lost."""
    with psycopg.connect(bouncer_dsn, autocommit=True, prepare_threshold=None) as client, \
            psycopg.connect(bouncer_dsn, autocommit=True, prepare_threshold=None) as other:
        servers = set()
        for _ in range(20):
            before = _pid(client)
            with other.transaction():
                held = _pid(other)  # most likely the server `client` just released
                during = _pid(client)
            assert during != held  # a server in a transaction serves no one else
            servers |= {before, during}
    assert len(servers) >= 2


def test_every_call_through_the_bouncer(bouncer_dsn, new_id, new_channel):
    channel = new_channel()
    with psycopg.connect(bouncer_dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        # More calls than psycopg's prepare threshold (5): nothing is prepared, or PgBouncer
        # would route an EXECUTE to a server connection that never saw the PREPARE.
        for _ in range(3):
            id = new_id()
            assert barriers.enqueue(id, 3, callback={"n": 3}, channel=channel) is EnqueueStatus.PENDING
            assert barriers.add(id, 1) == 4
            for slot in (3, 1, 0):
                assert barriers.report(id, slot, slot=slot).status is ReportStatus.PENDING
            assert barriers.report(id, 1, slot=1).status is ReportStatus.DUPLICATE
            assert barriers.results(id) == [0, 1, 3]
            last = barriers.report(id, 2, slot=2)
            assert last.completed and last.results == [0, 1, 2, 3]
            assert barriers.status(id).status is State.COMPLETE
            with conn.transaction():
                assert barriers.take(id) is not None
            assert barriers.take(id) is None
        other = new_id()
        barriers.enqueue(other, 1, channel=channel)
        assert barriers.abort(other).value == "aborted"
        # 0.4's calls and arguments.
        shaped = new_id()
        barriers.enqueue(shaped, 2, channel=channel, sealed=False, max_failures=1)
        assert barriers.pending_slots(shaped) == [0, 1]
        assert barriers.report(shaped, "e", slot=0, failed=True).status is ReportStatus.PENDING
        assert barriers.report(shaped, 1, slot=1).remaining == 0
        sealed = barriers.seal(shaped)
        assert sealed.status is ReportStatus.COMPLETE_WITH_FAILURES and sealed.failed_slots == [0]
        assert barriers.status(shaped).status is State.COMPLETE_WITH_FAILURES
        assert barriers.take(shaped).errors == ["e"]
        assert barriers.completions(channel) == []
        assert barriers.stats().complete >= 3
        assert barriers.sweep(10).expired >= 0


def test_sixteen_connections_race_through_the_bouncer(bouncer_dsn, dsn, new_id):
    ids = [new_id() for _ in range(10)]
    slots = 16 * 4
    with psycopg.connect(dsn, autocommit=True) as conn:
        for id in ids:
            Barriers(conn).enqueue(id, slots)
    answers: list[tuple[str, object]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker(first: int) -> None:
        try:
            work(first)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(error)

    def work(first: int) -> None:
        # prepare_threshold=None: the test's own statements must not be prepared either.
        with psycopg.connect(bouncer_dsn, autocommit=True, prepare_threshold=None) as own:
            barriers = Barriers(own)
            start.wait()
            for id in ids:
                for slot in range(first, slots, 16):
                    # Half of them in a transaction with other work, as a task would.
                    if slot % 2:
                        with own.transaction():
                            own.execute("SELECT 1")
                            answer = barriers.report(id, [id, slot], slot=slot)
                    else:
                        answer = barriers.report(id, [id, slot], slot=slot)
                    with lock:
                        answers.append((id, answer))

    threads = [threading.Thread(target=worker, args=(first,)) for first in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(answers) == len(ids) * slots
    completers = Counter(id for id, answer in answers if answer.completed)
    assert completers == Counter({id: 1 for id in ids})
    for id, answer in answers:
        if answer.completed:
            assert answer.results == [[id, slot] for slot in range(slots)]
    assert all(answer.status in (ReportStatus.PENDING, ReportStatus.COMPLETE) for _, answer in answers)


def test_the_polling_waiter_through_the_bouncer(bouncer_dsn, dsn, new_id, new_channel):
    channel = new_channel()
    ids = [new_id() for _ in range(40)]
    handed: list[str] = []
    lock = threading.Lock()

    def consume() -> None:
        with Waiter(bouncer_dsn, listen=False, poll_interval=0.2) as waiter:
            for completion in waiter.completions(channel, idle_timeout=3):
                with lock:
                    handed.append(completion.id)

    consumers = [threading.Thread(target=consume) for _ in range(4)]
    for consumer in consumers:
        consumer.start()
    with psycopg.connect(bouncer_dsn, autocommit=True) as conn:
        barriers = Barriers(conn)
        for id in ids:
            barriers.enqueue(id, 1, channel=channel)
            barriers.report(id, id, slot=0)
        waited = ids[-1]
    with Waiter(bouncer_dsn, listen=False, poll_interval=0.2) as waiter:
        assert waiter.wait(waited, timeout=10).status is State.COMPLETE
    for consumer in consumers:
        consumer.join()
    counts = Counter(handed)
    assert set(counts) == set(ids) and max(counts.values()) == 1


def test_listen_through_the_bouncer_is_not_delivered(bouncer_dsn, dsn, new_id, new_channel):
    """Why the waiter has listen=False: LISTEN registers on whichever server connection ran it,
    which then serves other clients, so the listener does not hear the notification."""
    channel = new_channel()
    with psycopg.connect(bouncer_dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {channel}")
        id = new_id()
        with psycopg.connect(dsn, autocommit=True) as conn:
            Barriers(conn).enqueue(id, 1, channel=channel)
            Barriers(conn).report(id, None, slot=0)
        assert list(listener.notifies(timeout=2, stop_after=1)) == []
