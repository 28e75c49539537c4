"""The statements the client sends, checked without a server: a call that uses none of
pg_barrier 0.4's arguments sends the function call the 0.3 client sent, so it keeps working
against a 0.3 server, and answers are read by column name, so a 0.3 server's narrower rows read
with their 0.3 meaning."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pg_barrier import CompletionStatus, ReportStatus, State, _calls


def _text(call: _calls.Call) -> str:
    return call.query.as_string(None)


def test_plain_calls_send_the_0_3_function_calls():
    plain = _calls.enqueue(None, "id", 2, None, None, None, False, None)
    assert _text(plain) == (
        'SELECT "barrier_enqueue"(%s::text, %s::integer, %s::jsonb, %s::interval, %s::text,'
        " %s::boolean, %s::interval)"
    )
    assert plain.params == ("id", 2, None, None, None, False, None)
    report = _calls.report(None, "id", None, 0)
    assert _text(report) == 'SELECT * FROM "barrier_decr"(%s::text, %s::jsonb, %s::integer)'
    assert report.params == ("id", None, 0)
    explicit_defaults = _calls.enqueue(
        None, "id", 2, None, None, None, False, None,
        max_failures=None, need=None, sealed=True, on_expiry="discard",
        parent=None, parent_slot=None,
    )
    assert _text(explicit_defaults) == _text(plain)
    assert _text(_calls.report(None, "id", None, 0, False)) == _text(report)


def test_the_shape_arguments_are_named_and_sent_only_when_set():
    shaped = _calls.enqueue(
        "s", "id", 2, None, None, None, False, None,
        max_failures=0, need=1, sealed=False, on_expiry="deliver", parent="p", parent_slot=3,
    )
    assert _text(shaped).endswith(
        ", max_failures => %s::integer, need => %s::integer, sealed => %s::boolean,"
        " on_expiry => %s::text, parent => %s::text, parent_slot => %s::integer)"
    )
    assert _text(shaped).startswith('SELECT "s"."barrier_enqueue"(')
    assert shaped.params[7:] == (0, 1, False, "deliver", "p", 3)
    # parent and parent_slot travel together, so that the server names the missing one.
    alone = _calls.enqueue(None, "id", 2, None, None, None, False, None, parent_slot=1)
    assert _text(alone).endswith(", parent => %s::text, parent_slot => %s::integer)")
    assert alone.params[7:] == (None, 1)
    failed = _calls.report(None, "id", "e", 1, True)
    assert _text(failed).endswith(", failed => %s::boolean)")
    assert failed.params[3:] == (True,)
    assert _text(_calls.seal(None, "id")) == 'SELECT * FROM "barrier_seal"(%s::text)'
    pages = _calls.pending_slots(None, "id", 10, 4)
    assert _text(pages) == (
        'SELECT slot FROM "barrier_pending_slots"'
        "(%s::text, max_rows => %s::integer, after => %s::integer)"
    )
    assert pages.params == ("id", 10, 4)


def test_a_0_3_servers_rows_read_with_their_0_3_meaning():
    complete = _calls.report(None, "id", None, 0).answer(
        _calls.Rows([("complete", 0, [1], "cb")], ["status", "remaining", "results", "callback"])
    )
    assert complete.completed
    assert (complete.failed_slots, complete.errors, complete.missing_slots) == ([], [], [])
    pending = _calls.report(None, "id", None, 0).answer(
        _calls.Rows([("pending", 1, None, None)], ["status", "remaining", "results", "callback"])
    )
    assert (pending.status, pending.failed_slots) == (ReportStatus.PENDING, None)

    taken = _calls.take(None, "id").answer(_calls.Rows([([1], "cb")], ["results", "callback"]))
    assert taken is not None
    assert (taken.status, taken.failed_slots, taken.errors, taken.missing_slots) == (
        CompletionStatus.COMPLETE, [], [], [],
    )

    now = datetime.now(timezone.utc)
    columns = ["id", "status", "expected", "remaining", "created_at", "expires_at",
               "finished_at", "channel", "callback", "reason", "round"]
    row = ("id", "pending", 2, 2, now, now + timedelta(hours=6), None, "pg_barrier", None, None, 1)
    state = _calls.status(None, "id").answer(_calls.Rows([row], columns))
    assert state is not None
    assert (state.status, state.failed, state.sealed, state.need) == (State.PENDING, 0, True, None)

    (claimed,) = _calls.completions(None, None, 1).answer(
        _calls.Rows([("id", now, [1], None)], ["id", "finished_at", "results", "callback"])
    )
    assert (claimed.id, claimed.status, claimed.missing_slots) == ("id", CompletionStatus.COMPLETE, [])


def test_0_4_rows_carry_the_new_fields():
    columns = ["status", "remaining", "results", "callback", "failed_slots", "errors",
               "missing_slots"]
    answer = _calls.seal(None, "id").answer(
        _calls.Rows([("complete_with_failures", 1, [None, "b", None], None, [0], ["e"], [2])],
                    columns)
    )
    assert answer.status is ReportStatus.COMPLETE_WITH_FAILURES and answer.completed
    assert (answer.failed_slots, answer.errors, answer.missing_slots) == ([0], ["e"], [2])
    slots = _calls.pending_slots(None, "id").answer(_calls.Rows([(1,), (3,)], ["slot"]))
    assert slots == [1, 3]
    assert State("complete_with_failures").finished
