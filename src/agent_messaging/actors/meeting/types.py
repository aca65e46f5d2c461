"""The meeting actor's small types: commands, seats, the selector signature, the clock of a deadline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio

from ...models import MeetingEvent, MeetingState, MeetingStatus, ParticipantStatus, Turn
from ...persistence.store import meetings as store
from ...runtime._slot import Slot

__all__ = [
    "Command",
    "MeetingSnapshot",
    "Op",
    "Seat",
    "Selector",
    "TurnSlot",
    "clock_deadline",
    "snapshot_of",
    "turn_attributes",
]

T = TypeVar("T")
#: A speaker-selection function: ``(status, last_event) -> agent id | None`` (anything else means round robin).
Selector = Callable[[MeetingStatus, MeetingEvent[Any] | None], object]
#: Where a blocked participant waits: its next ``Turn`` (or one with ``ended``/``left``); ``None`` for ``end``.
TurnSlot = Slot[Turn[Any] | None]


class Op(StrEnum):
    """What a command asks of the meeting actor."""

    ATTEND = "attend"
    START = "start"
    SPEAK = "speak"
    PASS = "pass"
    LEAVE = "leave"
    END = "end"


@dataclass(eq=False)
class Command(Generic[T]):
    """One request to the meeting actor; ``slot`` is where its caller waits for the result."""

    op: Op
    agent: str
    message: Any = None
    message_json: str | None = None
    next_speaker: str | None = None
    slot: TurnSlot = field(default_factory=Slot)
    trace: Any = None
    """The caller's trace context (tracing on): the actor applies the command in a child span."""

    def span_attributes(self, meeting_id: UUID) -> dict[str, Any]:
        """The attributes of this command's spans (the caller's, and the actor's that applies it)."""
        attributes: dict[str, Any] = {
            "agent_messaging.meeting.id": str(meeting_id),
            "agent_messaging.meeting.operation": self.op.value,
            "agent_messaging.agent": self.agent,
        }
        if self.next_speaker is not None:
            attributes["agent_messaging.meeting.next_speaker"] = self.next_speaker
        return attributes


@dataclass(eq=False)
class Seat(Generic[T]):
    """A participant as the actor keeps it."""

    agent: str
    agent_id: UUID
    position: int
    status: ParticipantStatus
    seen_seq: int = 0
    waiter: TurnSlot | None = None
    leaving: list[TurnSlot] = field(default_factory=list)
    late: bool = False

    @property
    def in_rotation(self) -> bool:
        """Present and not about to leave."""
        return self.status is ParticipantStatus.PRESENT and not self.leaving


def clock_deadline(deadline: datetime | None) -> float:
    """The anyio-clock time of a wall-clock deadline (``inf`` for none); a past deadline is 'now'."""
    if deadline is None:
        return float("inf")
    remaining = (deadline - datetime.now(UTC)).total_seconds()
    return anyio.current_time() + max(remaining, 0.0)


class MeetingSnapshot(Generic[T]):
    """A meeting's state as an actor instance starts from it (a new meeting, or one loaded from the database)."""

    def __init__(
        self,
        *,
        seats: list[Seat[T]],
        turn_duration: float | None,
        state: MeetingState = MeetingState.CREATED,
        floor_holder: str | None = None,
        turn_number: int = 0,
        deadline: datetime | None = None,
        seq: int = 0,
        history: list[MeetingEvent[Any]] | None = None,
        fresh: bool = False,
    ) -> None:
        self.fresh = fresh
        """A meeting just created (no command of another runtime can be waiting for it yet)."""
        self.seats = seats
        self.turn_duration = turn_duration
        self.state = state
        self.floor_holder = floor_holder
        self.turn_number = turn_number
        self.deadline = deadline
        self.seq = seq
        self.history = list(history or [])


def snapshot_of(row: store.MeetingRow) -> MeetingSnapshot[Any]:
    """The snapshot of a meeting loaded from the database (``store.load_active``)."""
    return MeetingSnapshot(
        seats=[Seat[Any](s.agent, s.agent_id, s.position, s.status, s.seen_seq) for s in row.seats],
        turn_duration=row.turn_duration,
        state=row.state,
        floor_holder=row.floor_holder,
        turn_number=row.turn_number,
        deadline=row.turn_deadline,
        seq=row.last_seq,
        history=row.events,
    )


def turn_attributes(turn: Turn[Any]) -> dict[str, Any]:
    """The attributes a turn adds to the span of the command that waited for it (and of its handling)."""
    return {
        "agent_messaging.meeting.id": str(turn.meeting_id),
        "agent_messaging.agent": turn.agent,
        "agent_messaging.meeting.turn_number": turn.turn_number,
        "agent_messaging.meeting.ended": turn.ended,
        "agent_messaging.meeting.left": turn.left,
    }
