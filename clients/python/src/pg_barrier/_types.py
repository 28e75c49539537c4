"""The answers of pg_barrier's SQL functions, as enums and dataclasses."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional


class EnqueueStatus(str, enum.Enum):
    """What ``barrier_enqueue`` answers."""

    PENDING = "pending"
    #: ``expected = 0``: an empty fan-in completes (and notifies) at once.
    COMPLETE = "complete"


class ReportStatus(str, enum.Enum):
    """What ``barrier_decr`` answers."""

    PENDING = "pending"
    #: This report was the last: the answer carries every result and the callback.
    COMPLETE = "complete"
    #: This slot had already reported; nothing changed (a retried or redelivered task).
    DUPLICATE = "duplicate"
    ALREADY_COMPLETE = "already_complete"
    ABORTED = "aborted"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class AbortStatus(str, enum.Enum):
    """What ``barrier_abort`` answers."""

    #: This call aborted the barrier.
    ABORTED = "aborted"
    ALREADY_ABORTED = "already_aborted"
    ALREADY_COMPLETE = "already_complete"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class State(str, enum.Enum):
    """The state of a barrier's round, as ``barrier_status`` and notifications give it."""

    PENDING = "pending"
    COMPLETE = "complete"
    ABORTED = "aborted"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self is not State.PENDING


@dataclass(frozen=True)
class Report:
    """One task's report (``barrier_decr``). Only a ``COMPLETE`` report carries
    ``results`` (every task's result, in slot order) and ``callback``."""

    status: ReportStatus
    #: Reports still needed; ``None`` for an unknown barrier.
    remaining: Optional[int]
    results: Optional[list[Any]] = None
    callback: Any = None

    @property
    def completed(self) -> bool:
        """Whether this report completed the barrier (exactly one per round does)."""
        return self.status is ReportStatus.COMPLETE


@dataclass(frozen=True)
class BarrierStatus:
    """The truth about a barrier (``barrier_status``)."""

    id: str
    status: State
    expected: int
    remaining: int
    created_at: datetime
    expires_at: datetime
    finished_at: Optional[datetime]
    channel: str
    callback: Any
    reason: Optional[str]
    round: int


@dataclass(frozen=True)
class Taken:
    """A completion handed out by ``barrier_take``."""

    results: list[Any]
    callback: Any


@dataclass(frozen=True)
class Completion:
    """A completion claimed by ``barrier_completions``."""

    id: str
    finished_at: datetime
    results: list[Any]
    callback: Any


@dataclass(frozen=True)
class Sweep:
    """One round of ``barrier_sweep``: repeat while either count equals ``max_rows``."""

    expired: int
    deleted: int


@dataclass(frozen=True)
class Stats:
    """``barrier_stats``: counts over the barriers the calling role may act for."""

    pending: int
    complete: int
    aborted: int
    expired: int
    untaken: int
    oldest_pending_age: Optional[timedelta]
    result_rows: int
    result_bytes: int


@dataclass(frozen=True)
class Notification:
    """The payload of the NOTIFY sent when a round ends: a wake-up hint, never the truth
    (read ``barrier_status`` for that)."""

    id: str
    status: State
    round: int

    @classmethod
    def parse(cls, payload: str) -> "Notification":
        """Decodes a payload such as ``{"id": "x", "status": "complete", "round": 1}``."""
        fields = json.loads(payload)
        return cls(id=fields["id"], status=State(fields["status"]), round=int(fields["round"]))
