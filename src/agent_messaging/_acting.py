"""Acting as one agent: ``AgentSession(am, "alice")``, the messaging operations of alice and of nobody else.

The MCP server (``agent-messaging mcp``) and the tools of LLM-backed agents
(``agent_messaging.llm``) both go through it, so the isolation rules live here
only:

- every operation is made *as* the session's agent: its notes, its calls, its
  replies, its unread messages; no argument names another agent's mailbox;
- other agents are reached only through the runtime's own checks (unknown
  agent: ``AgentNotFound``; another organization: ``CrossOrganization``);
- meetings: status, history and every meeting operation are refused
  (``InvalidOperation``) unless the agent is the meeting's host or one of its
  participants;
- every wait is bounded: a call, a wait for a message or for a meeting turn
  lasts at most ``max_wait`` seconds (a larger timeout is capped).

A meeting operation that waits for the agent's next turn (``attend_meeting``,
``start_meeting``, ``speak``, ``pass_turn``) returns ``None`` when the turn
has not come within its wait: the meeting goes on, and the next
``attend_meeting`` waits again (it returns at once if the floor is the
agent's by then). The ``messages`` of a returned turn are everything recorded
since this session last returned a turn of that meeting (taken from the
meeting's history), so nothing is missed across abandoned waits.

:func:`explain` turns an ``AgentMessagingError`` into one line that says what
went wrong and what to do next, for a model to read.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import anyio

from ._validation import check_id
from .errors import (
    AgentMessagingError,
    AgentNotFound,
    ConversationEnded,
    CrossOrganization,
    DeadlockDetected,
    HandlerError,
    InvalidArgument,
    InvalidMessage,
    InvalidOperation,
    MeetingEnded,
    MeetingNotFound,
    MeetingNotReady,
    NotHost,
    NotYourTurn,
    PersistenceUnavailable,
    ReplyTimeout,
    TurnTimedOut,
    WaitTimeout,
)
from .models import AgentInfo, MeetingEvent, MeetingEventType, MeetingStatus, Message, Turn

if TYPE_CHECKING:
    from ._app import AgentMessaging

__all__ = ["AgentSession", "explain"]

T = TypeVar("T")
R = TypeVar("R")

#: The most unread messages one ``read_messages`` returns.
MAX_READ = 100


class AgentSession(Generic[T]):
    """The messaging operations of one agent, and only of that agent, on an open runtime.

    ``alice = AgentSession(am, "alice", max_wait=60)`` then ``await alice.call("bob", msg)``.
    The session holds no connection and starts no task: it is cheap to make,
    and any number of them may be used at once. (Unrelated to the *sessions*
    of a conversation between two agents.)
    """

    def __init__(self, messaging: AgentMessaging[T], agent: str, *, max_wait: float = 60.0) -> None:
        if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not 0 < max_wait < math.inf:
            raise InvalidArgument(f"max_wait must be a positive number of seconds, not {max_wait!r}")
        self.messaging = messaging
        self.agent = check_id(agent, "agent")
        self.max_wait = float(max_wait)
        self._seen: dict[UUID, int] = {}

    def __repr__(self) -> str:
        return f"AgentSession(agent={self.agent!r}, max_wait={self.max_wait:g})"

    # ------------------------------------------------------------------ who

    async def me(self) -> AgentInfo:
        """The agent this session acts as (``AgentNotFound`` if it is not registered)."""
        return await self.messaging.get_agent(self.agent)

    async def list_agents(self) -> list[AgentInfo]:
        """The other live agents of this agent's organization: the ones it may message and meet."""
        me = await self.me()
        agents = await self.messaging.list_agents(me.organization_external_id)
        return [agent for agent in agents if agent.external_id != self.agent]

    # ------------------------------------------------------------- messages

    async def send_note(
        self, to: str | Sequence[str], message: T, *, metadata: dict[str, Any] | None = None
    ) -> list[UUID]:
        """Send a one-way note to one or more agents; returns the note ids once committed."""
        return await self.messaging.one_way.send(self.agent, to, message, metadata=metadata)

    async def call(self, to: str, message: T, *, timeout: float | None = None) -> T:  # noqa: ASYNC109 - a bounded timeout
        """Call ``to`` and wait for its answer, at most ``timeout`` seconds (default and cap: ``max_wait``).

        :raises ReplyTimeout: no answer in time (a late one lands in this agent's unread messages).
        :raises HandlerError: the handler of ``to`` failed on this call (its error type and message).
        """
        limit = self.bounded(timeout, "timeout")
        return await self.messaging.conversation.send_and_wait(self.agent, to, message, timeout=limit)

    async def reply(self, to: str, message: T, *, request_id: UUID | str | None = None) -> UUID:
        """Answer a call ``to`` made to this agent: ``request_id``'s, else ``to``'s oldest unanswered one."""
        rid = None if request_id is None else _uuid(request_id, "request_id")
        return await self.messaging.conversation.reply(self.agent, to, message, request_id=rid)

    async def read_messages(self, *, from_agent: str | None = None, limit: int = 20) -> list[Message[T]]:
        """Claim this agent's unread messages (from ``from_agent`` only if given), oldest first, at most ``limit``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_READ:
            raise InvalidArgument(f"limit must be an integer from 1 to {MAX_READ}, not {limit!r}")
        return await self.messaging.conversation.get_unread_messages(self.agent, from_agent=from_agent, limit=limit)

    async def wait_for_message(
        self,
        *,
        from_agent: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the API takes a (bounded) timeout
    ) -> Message[T]:
        """Claim the oldest unread message, waiting at most ``timeout`` seconds for one (``WaitTimeout``)."""
        limit = self.bounded(timeout, "timeout")
        return await self.messaging.conversation.wait_for_message(self.agent, from_agent=from_agent, timeout=limit)

    # ------------------------------------------------------------- meetings

    async def create_meeting(self, participants: Sequence[str], *, turn_duration: float | None = None) -> UUID:
        """Create a meeting hosted by this agent (``turn_duration`` None: the runtime's default)."""
        if turn_duration is None:
            return await self.messaging.meeting.create_meeting(self.agent, participants)
        return await self.messaging.meeting.create_meeting(self.agent, participants, turn_duration=turn_duration)

    async def attend_meeting(self, meeting_id: UUID | str, *, wait: float | None = None) -> Turn[T] | None:
        """Join (or rejoin) a meeting and wait for this agent's turn; ``None`` if it has not come within ``wait``."""
        mid = await self._member(meeting_id)
        return await self._turn(mid, wait, partial(self.messaging.meeting.attend_meeting, self.agent, mid))

    async def start_meeting(
        self, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None, wait: float | None = None
    ) -> Turn[T] | None:
        """Open the meeting this agent hosts with ``message``; then wait for its next turn (``None``: not yet)."""
        mid = await self._member(meeting_id)
        start = partial(self.messaging.meeting.start_meeting, self.agent, mid, message, next_speaker=next_speaker)
        return await self._turn(mid, wait, start)

    async def speak(
        self, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None, wait: float | None = None
    ) -> Turn[T] | None:
        """Say ``message`` while holding the floor, which then passes on; wait for the next turn (``None``: not yet)."""
        mid = await self._member(meeting_id)
        speak = partial(self.messaging.meeting.speak, self.agent, mid, message, next_speaker=next_speaker)
        return await self._turn(mid, wait, speak)

    async def pass_turn(self, meeting_id: UUID | str, *, wait: float | None = None) -> Turn[T] | None:
        """Give up the floor without speaking; wait for the next turn (``None``: not yet)."""
        mid = await self._member(meeting_id)
        return await self._turn(mid, wait, partial(self.messaging.meeting.pass_turn, self.agent, mid))

    async def leave_meeting(self, meeting_id: UUID | str) -> None:
        """Leave a meeting (not its host)."""
        mid = await self._member(meeting_id)
        await self.messaging.meeting.leave_meeting(self.agent, mid)

    async def end_meeting(self, meeting_id: UUID | str, *, message: T | None = None) -> None:
        """End the meeting this agent hosts; every participant's wait ends."""
        mid = await self._member(meeting_id)
        await self.messaging.meeting.end_meeting(self.agent, mid, message=message)

    async def meeting_status(self, meeting_id: UUID | str) -> MeetingStatus:
        """State, floor holder, turn and participants of a meeting this agent takes part in."""
        return await self._status(meeting_id)

    async def meeting_history(
        self, meeting_id: UUID | str, *, after_seq: int = 0, limit: int = 100
    ) -> list[MeetingEvent[T]]:
        """What was said and happened in a meeting this agent takes part in, oldest first, after ``after_seq``."""
        mid = await self._member(meeting_id)
        return await self.messaging.meeting.get_meeting_history(mid, after_seq=after_seq, limit=limit)

    # -------------------------------------------------------------- helpers

    def bounded(self, value: float | None, what: str = "wait") -> float:
        """``value`` seconds capped at ``max_wait`` (``max_wait`` if None); ``InvalidArgument`` if not positive."""
        if value is None:
            return self.max_wait
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value <= 0:
            raise InvalidArgument(f"{what} must be a positive number of seconds (at most {self.max_wait:g})")
        return min(float(value), self.max_wait)

    async def _status(self, meeting_id: UUID | str) -> MeetingStatus:
        status = await self.messaging.meeting.get_meeting_status(meeting_id)
        if all(p.agent != self.agent for p in status.participants):
            raise InvalidOperation(
                f"agent {self.agent!r} does not take part in meeting {status.meeting_id}: only its host and "
                "participants can see it or act in it"
            )
        return status

    async def _member(self, meeting_id: UUID | str) -> UUID:
        return (await self._status(meeting_id)).meeting_id

    async def _turn(self, mid: UUID, wait: float | None, waiting: Callable[[], Awaitable[Turn[T]]]) -> Turn[T] | None:
        limit = self.bounded(wait)
        turn: Turn[T] | None = None
        with anyio.move_on_after(limit):
            turn = await waiting()
        if turn is None:
            return None
        # what happened since this session last saw the meeting (a wait abandoned earlier may have
        # taken a turn's messages with it)
        events = await self.messaging.meeting.get_meeting_history(mid, after_seq=self._seen.get(mid, 0))
        if events:
            self._seen[mid] = events[-1].seq
        messages = [e for e in events if e.type is not MeetingEventType.TURN_CHANGED]
        return turn.model_copy(update={"messages": messages})


def _uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidArgument(f"{what} must be a UUID, not {value!r}") from None


# ------------------------------------------------------------------ explaining errors

_HINTS: list[tuple[type[AgentMessagingError], str]] = [
    (CrossOrganization, "You can only message and meet agents of your own organization: call list_agents."),
    (MeetingNotFound, "Check the meeting id (create_meeting returns it)."),
    (NotYourTurn, "Wait for your turn with attend_meeting."),
    (TurnTimedOut, "The floor has moved on: call attend_meeting to wait for your next turn."),
    (MeetingNotReady, "They must attend first (attend_meeting); try start_meeting again later."),
    (NotHost, "Only the meeting's host can do this."),
    (MeetingEnded, "Nothing more can be said in it; meeting_history still shows what was said."),
    (
        ReplyTimeout,
        "If the answer comes later it lands in your unread messages: call read_messages or wait_for_message.",
    ),
    (WaitTimeout, "Nothing arrived: call wait_for_message again to keep waiting."),
    (
        DeadlockDetected,
        "The agent you called is itself waiting for you: answer first, or send a note instead of calling.",
    ),
    (
        HandlerError,
        "The agent you called failed while answering (its error is above): try again later, or ask differently.",
    ),
    (InvalidMessage, "Fix the message and try again."),
    (InvalidArgument, "Fix the arguments and try again."),
    (PersistenceUnavailable, "The message store is unavailable right now: try again later."),
]


def explain(exc: AgentMessagingError, agent: str | None = None) -> str:
    """One line for a model: the error's type and text, and what to do about it.

    ``agent`` is the agent the caller acts as (to tell "you are not registered" from "no such agent").
    """
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, AgentNotFound):
        if agent is not None and exc.external_id == agent:
            return f"{text}. You act as {agent!r}, which is not a registered agent: register it first."
        return f"{text}. Call list_agents to see the agents you can message."
    if isinstance(exc, ConversationEnded) and exc.message is not None:
        return f"{text} with the message {exc.message!r}. A new message starts a new conversation."
    for kind, hint in _HINTS:
        if isinstance(exc, kind):
            return f"{text}. {hint}"
    return text
