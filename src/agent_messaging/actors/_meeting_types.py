"""The meeting actor's small types: a caller's reply slot, a seat, a command, the selector signature."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

import anyio

from ..models import MeetingEvent, MeetingStatus, Participant, ParticipantStatus, Turn

__all__ = ["Command", "Seat", "Selector", "Waiter", "clock_deadline"]

T = TypeVar("T")
#: A speaker-selection function: ``(status, last_event) -> agent id | None`` (anything else means round robin).
Selector = Callable[[MeetingStatus, MeetingEvent[Any] | None], object]


@dataclass(eq=False)
class Waiter(Generic[T]):
    """A one-shot reply slot: the actor completes it, the caller waits on it (holding nothing)."""

    done: anyio.Event = field(default_factory=anyio.Event)
    turn: Turn[T] | None = None
    error: BaseException | None = None

    def complete(self, turn: Turn[T] | None = None) -> None:
        """Hand over a result (first completion wins)."""
        if not self.done.is_set():
            self.turn = turn
            self.done.set()

    def fail(self, error: BaseException) -> None:
        """Hand over an error (first completion wins)."""
        if not self.done.is_set():
            self.error = error
            self.done.set()

    async def wait(self) -> Turn[T] | None:
        """The result, once there is one; raises the error if it failed."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.turn


@dataclass(eq=False)
class Seat(Generic[T]):
    """A participant as the actor keeps it."""

    agent: str
    agent_id: UUID
    position: int
    status: ParticipantStatus
    seen_seq: int = 0
    waiter: Waiter[T] | None = None
    leaving: list[Waiter[T]] = field(default_factory=list)
    late: bool = False

    @property
    def in_rotation(self) -> bool:
        """Present and not about to leave."""
        return self.status is ParticipantStatus.PRESENT and not self.leaving


@dataclass(eq=False)
class Command(Generic[T]):
    """One request to the meeting actor; ``op`` is attend, start, speak, pass, leave or end."""

    op: str
    agent: str
    waiter: Waiter[T]
    message: Any = None
    message_json: str | None = None
    next_speaker: str | None = None


def clock_deadline(deadline: datetime | None) -> float:
    """The anyio-clock time of a wall-clock deadline (``inf`` for none); a past deadline is 'now'."""
    if deadline is None:
        return float("inf")
    remaining = (deadline - datetime.now(UTC)).total_seconds()
    return anyio.current_time() + max(remaining, 0.0)


class _SeatLike(Protocol):
    @property
    def agent(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def status(self) -> ParticipantStatus: ...


def participants_of(seats: list[Any]) -> list[Participant]:
    """The public participants of seats (the actor's or the store's), in rotation order as given."""
    return [_participant(seat) for seat in seats]


def _participant(seat: _SeatLike) -> Participant:
    return Participant(agent=seat.agent, position=seat.position, is_host=seat.position == 0, status=seat.status)
