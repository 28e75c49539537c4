"""The SQL of every call and how its rows become an answer: one place, shared by the
synchronous and the asyncio clients, which only differ in how they execute it.

Every value is a bind parameter with an explicit cast; only the schema (an identifier) is
composed into the text, quoted by psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

from psycopg import sql
from psycopg.types.json import Jsonb

from ._types import (
    AbortStatus,
    BarrierStatus,
    Completion,
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


@dataclass(frozen=True)
class Call(Generic[Answer]):
    """One statement and the conversion of its rows into the call's answer."""

    query: sql.Composed
    params: tuple[Any, ...]
    answer: Callable[[list[Row]], Answer]


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


def enqueue(
    schema: Optional[str],
    id: str,
    expected: int,
    callback: Any,
    ttl: Optional[timedelta],
    channel: Optional[str],
    replace: bool,
    stall_timeout: Optional[timedelta],
) -> Call[EnqueueStatus]:
    return Call(
        _statement(
            schema,
            "SELECT {fn}(%s::text, %s::integer, %s::jsonb, %s::interval, %s::text,"
            " %s::boolean, %s::interval)",
            "barrier_enqueue",
        ),
        (id, expected, _json(callback), ttl, channel, replace, stall_timeout),
        lambda rows: EnqueueStatus(_only(rows)[0]),
    )


def report(schema: Optional[str], id: str, result: Any, slot: Optional[int]) -> Call[Report]:
    def answer(rows: list[Row]) -> Report:
        status, remaining, results, callback = _only(rows)
        return Report(ReportStatus(status), remaining, results, callback)

    return Call(
        _statement(
            schema,
            "SELECT status, remaining, results, callback FROM {fn}(%s::text, %s::jsonb, %s::integer)",
            "barrier_decr",
        ),
        (id, _json(result), slot),
        answer,
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
    def answer(rows: list[Row]) -> Optional[BarrierStatus]:
        if not rows:
            return None
        row = _only(rows)
        return BarrierStatus(
            id=row[0],
            status=State(row[1]),
            expected=row[2],
            remaining=row[3],
            created_at=row[4],
            expires_at=row[5],
            finished_at=row[6],
            channel=row[7],
            callback=row[8],
            reason=row[9],
            round=row[10],
        )

    return Call(
        _statement(
            schema,
            "SELECT id, status, expected, remaining, created_at, expires_at, finished_at,"
            " channel, callback, reason, round FROM {fn}(%s::text)",
            "barrier_status",
        ),
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


def take(schema: Optional[str], id: str) -> Call[Optional[Taken]]:
    def answer(rows: list[Row]) -> Optional[Taken]:
        if not rows:
            return None
        results_, callback = _only(rows)
        return Taken(results_, callback)

    return Call(
        _statement(schema, "SELECT results, callback FROM {fn}(%s::text)", "barrier_take"),
        (id,),
        answer,
    )


def completions(
    schema: Optional[str], channel: Optional[str], max_rows: int
) -> Call[list[Completion]]:
    return Call(
        _statement(
            schema,
            "SELECT id, finished_at, results, callback FROM {fn}(%s::text, %s::integer)",
            "barrier_completions",
        ),
        (channel, max_rows),
        lambda rows: [Completion(*row) for row in rows],
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
