"""Exceptions for pg_barrier's errors, one class per SQLSTATE family it raises.

Each keeps the server's SQLSTATE, message, detail and hint, and the psycopg error as its
``__cause__``. Errors pg_barrier does not raise itself (a lost connection, a statement timeout)
propagate as psycopg's own exceptions.
"""

from __future__ import annotations

from typing import Optional

import psycopg


class BarrierError(Exception):
    """An error pg_barrier raised: the call changed nothing."""

    def __init__(
        self,
        message: str,
        sqlstate: Optional[str] = None,
        detail: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.detail = detail
        self.hint = hint


class InvalidArgument(BarrierError):
    """A NULL where a value is required (22004), a value out of its domain (22023), a text over
    its limit (22001), or an argument PostgreSQL could not convert (other class 22 codes)."""


class BarrierConflict(BarrierError):
    """42710: a live barrier with this id was enqueued with other arguments (pass
    ``replace=True`` to start over), or the ``parent_slot`` asked for is taken: it has reported,
    or another barrier reports into it. The message and detail say which."""


class NotOwner(BarrierError):
    """42501: the barrier belongs to another role."""


class UnknownBarrier(BarrierError):
    """42704: ``add``, ``seal`` or ``pending_slots`` on an id no barrier has, or an enqueue whose
    ``parent`` does not exist."""


class BarrierFinished(BarrierError):
    """55000: ``add`` or ``seal`` on a finished barrier, an enqueue whose ``parent`` is finished,
    or SQL objects older than the loaded library (``ALTER EXTENSION pg_barrier UPDATE``)."""


class LimitExceeded(BarrierError):
    """54000: a result or callback over ``pg_barrier.max_result_bytes``, a barrier's results over
    255 MB together, or a full notification queue at commit. 54001: a JSON value nested too
    deeply, or a barrier that would be nested more than 16 levels below its root (its
    ``parent`` chain)."""


class NestingError(BarrierError):
    """42P19: the ``parent`` asked for would make the barrier its own ancestor. (A tree too
    deep, more than 16 levels, is a :class:`LimitExceeded`: 54001.)"""


class ReadOnly(BarrierError):
    """25006: a call that changes barriers in a read-only transaction or on a hot standby."""


class SerializationFailure(BarrierError):
    """40001: at REPEATABLE READ or SERIALIZABLE a concurrent report committed after the
    snapshot; nothing was counted, retry the transaction."""


_BY_SQLSTATE = {
    "42710": BarrierConflict,
    "42501": NotOwner,
    "42704": UnknownBarrier,
    "55000": BarrierFinished,
    "54000": LimitExceeded,
    "54001": LimitExceeded,
    "42P19": NestingError,
    "25006": ReadOnly,
    "40001": SerializationFailure,
}


def translate(error: psycopg.Error) -> BaseException:
    """The exception to raise for ``error``: a :class:`BarrierError` subclass for the SQLSTATEs
    pg_barrier's functions raise, else ``error`` itself."""
    sqlstate = error.sqlstate
    if sqlstate is None:
        return error
    cls = _BY_SQLSTATE.get(sqlstate)
    if cls is None and sqlstate.startswith("22"):
        cls = InvalidArgument
    if cls is None:
        return error
    diag = error.diag
    mapped = cls(
        diag.message_primary or str(error),
        sqlstate=sqlstate,
        detail=diag.message_detail,
        hint=diag.message_hint,
    )
    mapped.__cause__ = error
    return mapped
