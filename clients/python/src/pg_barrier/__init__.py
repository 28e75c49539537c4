"""pg_barrier for Python: typed calls for every SQL function of the extension, a waiter that
LISTENs where it can and polls where it cannot, and (``pg_barrier.celery``) a Celery chord
drop-in. Everything goes through pg_barrier's SQL API: the guarantees are the server's."""

from ._types import (
    AbortStatus,
    BarrierStatus,
    Completion,
    CompletionStatus,
    EnqueueStatus,
    Notification,
    OnExpiry,
    Report,
    ReportStatus,
    State,
    Stats,
    Sweep,
    Taken,
)
from .client import AsyncBarriers, Barriers
from .errors import (
    BarrierConflict,
    BarrierError,
    BarrierFinished,
    InvalidArgument,
    LimitExceeded,
    NestingError,
    NotOwner,
    ReadOnly,
    SerializationFailure,
    UnknownBarrier,
)
from .waiter import AsyncWaiter, Waiter

__version__ = "0.4.0"

__all__ = [
    "AbortStatus",
    "AsyncBarriers",
    "AsyncWaiter",
    "BarrierConflict",
    "BarrierError",
    "BarrierFinished",
    "BarrierStatus",
    "Barriers",
    "Completion",
    "CompletionStatus",
    "EnqueueStatus",
    "InvalidArgument",
    "LimitExceeded",
    "NestingError",
    "NotOwner",
    "Notification",
    "OnExpiry",
    "ReadOnly",
    "Report",
    "ReportStatus",
    "SerializationFailure",
    "State",
    "Stats",
    "Sweep",
    "Taken",
    "UnknownBarrier",
    "Waiter",
]
