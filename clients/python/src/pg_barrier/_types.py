"""The answers of pg_barrier's SQL functions, as enums and dataclasses."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Optional

#: What a barrier enqueued with a ``ttl`` or ``stall_timeout`` does when it runs out of time:
#: ``"discard"`` (the default) frees its results, ``"deliver"`` hands out what was reported.
OnExpiry = Literal["discard", "deliver"]


class EnqueueStatus(str, enum.Enum):
    """What ``barrier_enqueue`` answers."""

    PENDING = "pending"
    #: ``expected = 0``: an empty fan-in completes (and notifies) at once.
    COMPLETE = "complete"


class ReportStatus(str, enum.Enum):
    """What ``barrier_decr`` (and ``barrier_seal``) answers."""

    PENDING = "pending"
    #: This report (or seal) completed the barrier: the answer carries every result and the
    #: callback. Every counted report succeeded.
    COMPLETE = "complete"
    #: This report (or seal) completed the barrier, and at least one counted report failed
    #: (``failed_slots``, ``errors``).
    COMPLETE_WITH_FAILURES = "complete_with_failures"
    #: This slot had already reported; nothing changed (a retried or redelivered task).
    DUPLICATE = "duplicate"
    ALREADY_COMPLETE = "already_complete"
    #: The barrier was aborted (by this report, when it failed one too many under
    #: ``max_failures`` or put a quorum out of reach; or before it).
    ABORTED = "aborted"
    EXPIRED = "expired"
    UNKNOWN = "unknown"

    @property
    def completed(self) -> bool:
        """Whether the answer is a completion (``COMPLETE`` or ``COMPLETE_WITH_FAILURES``)."""
        return self in (ReportStatus.COMPLETE, ReportStatus.COMPLETE_WITH_FAILURES)


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
    #: Complete, and at least one counted report failed.
    COMPLETE_WITH_FAILURES = "complete_with_failures"
    ABORTED = "aborted"
    EXPIRED = "expired"

    @property
    def finished(self) -> bool:
        return self is not State.PENDING


class CompletionStatus(str, enum.Enum):
    """What a completion handed out by ``barrier_take`` or ``barrier_completions`` is."""

    #: Every counted report succeeded.
    COMPLETE = "complete"
    #: At least one counted report failed: see ``failed_slots`` and ``errors``.
    COMPLETE_WITH_FAILURES = "complete_with_failures"
    #: A barrier enqueued with ``on_expiry="deliver"`` ran out of time: what was reported by then.
    EXPIRED = "expired"


@dataclass(frozen=True)
class Report:
    """One task's report (``barrier_decr``), or a seal (``barrier_seal``). Only a completing
    answer (``COMPLETE`` or ``COMPLETE_WITH_FAILURES``) carries ``results`` (one element per slot,
    in slot order, ``None`` where a slot failed or never reported), ``callback``,
    ``failed_slots``, ``errors`` and ``missing_slots``; the others have ``None`` there."""

    status: ReportStatus
    #: Reports still needed (for a quorum's completion: those that had not reported); ``None``
    #: for an unknown barrier.
    remaining: Optional[int]
    results: Optional[list[Any]] = None
    callback: Any = None
    #: The slots whose report failed, ascending.
    failed_slots: Optional[list[int]] = None
    #: The failed reports' results, in the order of ``failed_slots``.
    errors: Optional[list[Any]] = None
    #: The slots that never reported (a quorum completion), ascending.
    missing_slots: Optional[list[int]] = None

    @property
    def completed(self) -> bool:
        """Whether this answer completed the barrier (exactly one per round does)."""
        return self.status.completed


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
    #: Failed reports held now (a re-armed slot no longer counts). 0 from a 0.3 server.
    failed: int = 0
    #: False for an open barrier (``sealed=False``) until ``seal`` is called.
    sealed: bool = True
    #: The quorum (``need``), or None: every task.
    need: Optional[int] = None


@dataclass(frozen=True)
class Taken:
    """A completion handed out by ``barrier_take``. ``results`` has one element per slot, in slot
    order; ``None`` where a slot failed (``failed_slots``) or never reported (``missing_slots``).
    For a plain barrier it is every task's result, and the lists are empty."""

    results: list[Any]
    callback: Any
    status: CompletionStatus = CompletionStatus.COMPLETE
    failed_slots: list[int] = field(default_factory=list)
    #: The failed reports' results, in the order of ``failed_slots``.
    errors: list[Any] = field(default_factory=list)
    missing_slots: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Completion:
    """A completion claimed by ``barrier_completions``: the fields of :class:`Taken`, with the
    barrier's id and when it finished."""

    id: str
    finished_at: datetime
    results: list[Any]
    callback: Any
    status: CompletionStatus = CompletionStatus.COMPLETE
    failed_slots: list[int] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    missing_slots: list[int] = field(default_factory=list)


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
    #: The round's end: ``COMPLETE``, ``COMPLETE_WITH_FAILURES``, ``ABORTED`` or ``EXPIRED``.
    status: State
    round: int

    @classmethod
    def parse(cls, payload: str) -> "Notification":
        """Decodes a payload such as ``{"id": "x", "status": "complete", "round": 1}``."""
        fields = json.loads(payload)
        return cls(id=fields["id"], status=State(fields["status"]), round=int(fields["round"]))
