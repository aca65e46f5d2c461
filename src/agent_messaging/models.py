"""Pydantic models the public API returns: organizations, agents, messages, meetings.

All models are frozen. Agents are named by their ``external_id`` (the id the
user chose); the internal UUIDs are there for joins and logs.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentInfo",
    "AgentStatus",
    "DeadLetter",
    "MeetingEvent",
    "MeetingEventType",
    "MeetingState",
    "MeetingStatus",
    "Message",
    "MessageKind",
    "Organization",
    "Participant",
    "ParticipantStatus",
    "Turn",
]

T = TypeVar("T")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Organization(_Frozen):
    """A tenant: agents of one organization can only talk to each other."""

    id: UUID
    external_id: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class AgentStatus(StrEnum):
    """Lifecycle of a registered agent."""

    ACTIVE = "active"
    FAILED = "failed"
    DEREGISTERED = "deregistered"


class AgentInfo(_Frozen):
    """A registered agent (the database record), member of exactly one organization.

    Not to be confused with :class:`agent_messaging.Agent`, the base class of
    the code that *hosts* an agent.
    """

    id: UUID
    external_id: str
    organization_id: UUID
    organization_external_id: str
    name: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: AgentStatus = AgentStatus.ACTIVE
    created_at: datetime


class MessageKind(StrEnum):
    """What a message is: a one-way note, a chat line, a call's request or reply, or a conversation's end."""

    ONE_WAY = "one_way"
    CHAT = "chat"
    REQUEST = "request"
    REPLY = "reply"
    END = "end"


class Message(_Frozen, Generic[T]):
    """A persisted message with its typed payload.

    ``seq`` is a stable, increasing sequence number for cursor paging; ``id`` is
    the stable id handlers use to de-duplicate (delivery is at-least-once).
    """

    id: UUID
    seq: int
    kind: MessageKind
    sender: str
    recipient: str
    payload: T
    metadata: dict[str, Any] = Field(default_factory=dict)
    conversation_id: UUID | None = None
    in_reply_to: UUID | None = None
    created_at: datetime
    read_at: datetime | None = None
    handled_at: datetime | None = None

    @property
    def is_read(self) -> bool:
        """Whether the message was claimed by a reader or handled by a handler."""
        return self.read_at is not None


class DeadLetter(_Frozen):
    """A message whose handler failed ``max_attempts`` times."""

    id: int
    message_id: UUID
    agent: str
    sender: str
    attempts: int
    error: str
    created_at: datetime
    retried_at: datetime | None = None


class MeetingState(StrEnum):
    """Lifecycle of a meeting."""

    CREATED = "created"
    ACTIVE = "active"
    ENDED = "ended"


class ParticipantStatus(StrEnum):
    """Where a participant stands in a meeting."""

    INVITED = "invited"
    PRESENT = "present"
    LEFT = "left"


class MeetingEventType(StrEnum):
    """Kinds of meeting history entries and events."""

    AGENT_JOINED = "agent_joined"
    MEETING_STARTED = "meeting_started"
    AGENT_SPOKE = "agent_spoke"
    TURN_CHANGED = "turn_changed"
    AGENT_TIMED_OUT = "agent_timed_out"
    AGENT_LEFT = "agent_left"
    MEETING_ENDED = "meeting_ended"


class Participant(_Frozen):
    """A meeting participant and its state."""

    agent: str
    position: int
    is_host: bool
    status: ParticipantStatus


class MeetingEvent(_Frozen, Generic[T]):
    """One entry of a meeting's history, with a gap-free per-meeting ``seq``."""

    meeting_id: UUID
    seq: int
    type: MeetingEventType
    agent: str | None = None
    message: T | None = None
    turn_number: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class MeetingStatus(_Frozen):
    """A snapshot of a meeting."""

    meeting_id: UUID
    state: MeetingState
    host: str
    floor_holder: str | None = None
    turn_number: int = 0
    turn_deadline: datetime | None = None
    turn_duration: float | None = None
    participants: list[Participant] = Field(default_factory=list)


class Turn(_Frozen, Generic[T]):
    """What a blocked meeting participant gets back when it holds the floor (or the meeting ended).

    ``messages`` are the meeting events spoken since the agent's last turn.
    """

    meeting_id: UUID
    agent: str
    turn_number: int = 0
    deadline: datetime | None = None
    messages: list[MeetingEvent[T]] = Field(default_factory=list)
    ended: bool = False
    left: bool = False
    ending_message: T | None = None
