"""The SQL of every call and how its rows become an answer: one place, shared by the
synchronous and the asyncio clients, which only differ in how they execute it.

Every value is a bind parameter with an explicit cast; only the schema (an identifier) is
composed into the text, quoted by psycopg.

A call that uses none of 0.4's arguments sends the same function call as the 0.3 client did
(the new arguments are appended, named, only when they differ from the server's defaults), and
answers that gained columns in 0.4 are read with ``SELECT *`` and by column name: a column a
0.3 server does not have reads as its 0.3 meaning. So the client works against a 0.3 server
for everything 0.3 could do, and a call using a 0.4 argument fails there with psycopg's
``UndefinedFunction`` (42883) instead of being silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Generic, Iterable, Optional, Sequence, TypeVar

from psycopg import sql
from psycopg.types.json import Jsonb

from ._types import (
    AbortStatus,
    BarrierStatus,
    Completion,
    CompletionStatus,
    EnqueueStatus,
    Report,
    ReportStatus,
    State,
    Stats,
    Sweep,
    Taken,
)

Row = Sequence[Any]
Answer = TypeVar("Answer")


class Rows(list[Row]):
    """The rows of a statement, with the names of its columns."""

    def __init__(self, rows: Iterable[Row], columns: Sequence[str]) -> None:
        super().__init__(rows)
        self.columns = tuple(columns)

    def named(self, row: Row) -> dict[str, Any]:
        """One row as a mapping from column name to value."""
        return dict(zip(self.columns, row))


@dataclass(frozen=True)
class Call(Generic[Answer]):
    """One statement and the conversion of its rows into the call's answer."""

    query: sql.Composed
    params: tuple[Any, ...]
    answer: Callable[[Rows], Answer]


def _function(schema: Optional[str], name: str) -> sql.Composable:
    return sql.Identifier(schema, name) if schema else sql.Identifier(name)


def _statement(schema: Optional[str], template: str, name: str) -> sql.Composed:
    return sql.SQL(template).format(fn=_function(schema, name))


def _json(value: Any) -> Optional[Jsonb]:
    """None is SQL NULL (a result of JSON null in the results array); anything else is jsonb,
    encoded by the standard json module unless the caller wrapped it in a Jsonb of its own."""
    if value is None or isinstance(value, Jsonb):
        return value
    return Jsonb(value)


def _only(rows: list[Row]) -> Row:
    if len(rows) != 1:
        raise RuntimeError(f"pg_barrier: expected one row, the server answered {len(rows)}")
    return rows[0]


def _named_arguments(arguments: list[tuple[str, str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """``, name => %s::type`` for each (name, type, value), and the values."""
    text = "".join(f", {name} => %s::{cast}" for name, cast, _ in arguments)
    return text, tuple(value for _, _, value in arguments)


def enqueue(
    schema: Optional[str],
    id: str,
    expected: int,
    callback: Any,
    ttl: Optional[timedelta],
    channel: Optional[str],
    replace: bool,
    stall_timeout: Optional[timedelta],
    max_failures: Optional[int] = None,
    need: Optional[int] = None,
    sealed: bool = True,
    on_expiry: str = "discard",
    parent: Optional[str] = None,
    parent_slot: Optional[int] = None,
) -> Call[EnqueueStatus]:
    # 0.4's arguments only when they differ from the server's defaults (a NULL where the
    # server wants a value is sent, for the server to refuse). parent and parent_slot go
    # together: either sends both, so that the server says which one is missing.
    shape: list[tuple[str, str, Any]] = []
    if max_failures is not None:
        shape.append(("max_failures", "integer", max_failures))
    if need is not None:
        shape.append(("need", "integer", need))
    if sealed is not True:
        shape.append(("sealed", "boolean", sealed))
    if on_expiry != "discard":
        shape.append(("on_expiry", "text", on_expiry))
    if parent is not None or parent_slot is not None:
        shape.append(("parent", "text", parent))
        shape.append(("parent_slot", "integer", parent_slot))
    named, values = _named_arguments(shape)
    return Call(
        _statement(
            schema,
            "SELECT {fn}(%s::text, %s::integer, %s::jsonb, %s::interval, %s::text,"
            " %s::boolean, %s::interval" + named + ")",
            "barrier_enqueue",
        ),
        (id, expected, _json(callback), ttl, channel, replace, stall_timeout) + values,
        lambda rows: EnqueueStatus(_only(rows)[0]),
    )


def _report_answer(rows: Rows) -> Report:
    """The answer of ``barrier_decr`` and ``barrier_seal``, with or without 0.4's columns."""
    row = rows.named(_only(rows))
    status = ReportStatus(row["status"])
    # A 0.3 server has no failure columns; its completions have no failures and no missing
    # slots, which is what a 0.4 server would say.
    none_yet: Optional[list[Any]] = [] if status.completed else None
    return Report(
        status,
        row["remaining"],
        row["results"],
        row["callback"],
        failed_slots=row.get("failed_slots", none_yet),
        errors=row.get("errors", none_yet),
        missing_slots=row.get("missing_slots", none_yet),
    )


def report(
    schema: Optional[str], id: str, result: Any, slot: Optional[int], failed: bool = False
) -> Call[Report]:
    named, values = _named_arguments([("failed", "boolean", failed)] if failed is not False else [])
    return Call(
        _statement(
            schema,
            "SELECT * FROM {fn}(%s::text, %s::jsonb, %s::integer" + named + ")",
            "barrier_decr",
        ),
        (id, _json(result), slot) + values,
        _report_answer,
    )


def seal(schema: Optional[str], id: str) -> Call[Report]:
    return Call(
        _statement(schema, "SELECT * FROM {fn}(%s::text)", "barrier_seal"),
        (id,),
        _report_answer,
    )


def pending_slots(
    schema: Optional[str], id: str, max_rows: int = 1000, after: Optional[int] = None
) -> Call[list[int]]:
    return Call(
        _statement(
            schema,
            "SELECT slot FROM {fn}(%s::text, max_rows => %s::integer, after => %s::integer)",
            "barrier_pending_slots",
        ),
        (id, max_rows, after),
        lambda rows: [int(row[0]) for row in rows],
    )


def abort(schema: Optional[str], id: str, reason: Optional[str]) -> Call[AbortStatus]:
    return Call(
        _statement(schema, "SELECT {fn}(%s::text, %s::text)", "barrier_abort"),
        (id, reason),
        lambda rows: AbortStatus(_only(rows)[0]),
    )


def add(schema: Optional[str], id: str, extra: int) -> Call[int]:
    return Call(
        _statement(schema, "SELECT {fn}(%s::text, %s::integer)", "barrier_add"),
        (id, extra),
        lambda rows: int(_only(rows)[0]),
    )


def status(schema: Optional[str], id: str) -> Call[Optional[BarrierStatus]]:
    def answer(rows: Rows) -> Optional[BarrierStatus]:
        if not rows:
            return None
        row = rows.named(_only(rows))
        return BarrierStatus(
            id=row["id"],
            status=State(row["status"]),
            expected=row["expected"],
            remaining=row["remaining"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            finished_at=row["finished_at"],
            channel=row["channel"],
            callback=row["callback"],
            reason=row["reason"],
            round=row["round"],
            # 0.4's columns, with their 0.3 meaning where the server has none.
            failed=row.get("failed", 0),
            sealed=row.get("sealed", True),
            need=row.get("need"),
        )

    return Call(
        _statement(schema, "SELECT * FROM {fn}(%s::text)", "barrier_status"),
        (id,),
        answer,
    )


def results(schema: Optional[str], id: str) -> Call[Optional[list[Any]]]:
    def answer(rows: list[Row]) -> Optional[list[Any]]:
        value: Optional[list[Any]] = _only(rows)[0]
        return value

    return Call(
        _statement(schema, "SELECT {fn}(%s::text)", "barrier_results"),
        (id,),
        answer,
    )


def _completion_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The fields a completion has since 0.4; a 0.3 server's completions are all complete,
    without failures or missing slots."""
    return {
        "status": CompletionStatus(row.get("status", CompletionStatus.COMPLETE.value)),
        "failed_slots": row.get("failed_slots", []),
        "errors": row.get("errors", []),
        "missing_slots": row.get("missing_slots", []),
    }


def take(schema: Optional[str], id: str) -> Call[Optional[Taken]]:
    def answer(rows: Rows) -> Optional[Taken]:
        if not rows:
            return None
        row = rows.named(_only(rows))
        return Taken(row["results"], row["callback"], **_completion_fields(row))

    return Call(
        _statement(schema, "SELECT * FROM {fn}(%s::text)", "barrier_take"),
        (id,),
        answer,
    )


def completions(
    schema: Optional[str], channel: Optional[str], max_rows: int
) -> Call[list[Completion]]:
    def answer(rows: Rows) -> list[Completion]:
        claimed = []
        for row in map(rows.named, rows):
            claimed.append(
                Completion(
                    row["id"],
                    row["finished_at"],
                    row["results"],
                    row["callback"],
                    **_completion_fields(row),
                )
            )
        return claimed

    return Call(
        _statement(schema, "SELECT * FROM {fn}(%s::text, %s::integer)", "barrier_completions"),
        (channel, max_rows),
        answer,
    )


def sweep(schema: Optional[str], max_rows: int) -> Call[Sweep]:
    return Call(
        _statement(schema, "SELECT expired, deleted FROM {fn}(%s::integer)", "barrier_sweep"),
        (max_rows,),
        lambda rows: Sweep(*_only(rows)),
    )


def stats(schema: Optional[str]) -> Call[Stats]:
    return Call(
        _statement(
            schema,
            "SELECT pending, complete, aborted, expired, untaken, oldest_pending_age,"
            " result_rows, result_bytes FROM {fn}()",
            "barrier_stats",
        ),
        (),
        lambda rows: Stats(*_only(rows)),
    )


def listen(channel: str) -> sql.Composed:
    """``LISTEN channel``: channels are lower-case identifiers, quoted all the same."""
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))
