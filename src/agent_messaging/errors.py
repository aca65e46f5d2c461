"""The whole exception tree of agent-messaging.

Every error the library raises on purpose is one of these. Each carries the ids
it is about (agent, meeting, message...) as attributes, and its message names
the problem in words a user can act on. A DSN's password never appears in one.

::

    AgentMessagingError
    ├── ConfigurationError            bad or missing configuration, a DSN that cannot be read, a
    │                                 database server that refuses the connection (password, role...)
    ├── InvalidArgument (ValueError)  empty/too long/control-character ids, wrong types
    ├── InvalidMessage (ValueError)   payload not valid as the message model, or too large
    ├── NotFound (LookupError)
    │   ├── OrganizationNotFound
    │   ├── AgentNotFound
    │   ├── MeetingNotFound
    │   └── DeadLetterNotFound
    ├── AlreadyExists                 registering an external id twice
    ├── InvalidOperation              not allowed in the current state
    │   ├── CrossOrganization         agents of different organizations
    │   ├── NotHost                   a host-only meeting operation by someone else
    │   ├── NotYourTurn               speaking without the floor
    │   ├── TurnTimedOut              speaking after one's turn expired
    │   ├── MeetingNotReady           starting before every participant is present
    │   ├── RunnerMoved               the meeting's runtime lost it to another; call again
    │   └── LifecycleError            AgentMessaging entered twice / used closed
    ├── ReplyTimeout (TimeoutError)   send_and_wait got no reply in time
    ├── WaitTimeout (TimeoutError)    wait_for_message saw nothing in time
    ├── ConversationEnded             the conversation ended while waiting
    ├── MeetingEnded                  the meeting ended (for operations on it)
    ├── DeadlockDetected              a call would close a cycle of waiting agents
    ├── HandlerError                  the handler of a call raised (the error came back to the caller)
    ├── PersistenceUnavailable        the database could not be reached in time
    └── ActorError                    the actor kernel
        ├── MailboxFull               tell_nowait on a full mailbox
        ├── ActorStopped              the actor stopped before handling the message
        └── SupervisorFailed          a supervisor exceeded its restart intensity

The builtin ``TimeoutError`` is never shadowed: the two timeouts subclass it.

Errors cross processes (a meeting command run by another runtime, say) as
JSON: :func:`error_to_json` and :func:`error_from_json` keep the type, the
message and the attributes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

__all__ = [
    "ActorError",
    "ActorStopped",
    "AgentMessagingError",
    "AgentNotFound",
    "AlreadyExists",
    "ConfigurationError",
    "ConversationEnded",
    "CrossOrganization",
    "DeadLetterNotFound",
    "DeadlockDetected",
    "HandlerError",
    "InvalidArgument",
    "InvalidMessage",
    "InvalidOperation",
    "LifecycleError",
    "MailboxFull",
    "MeetingEnded",
    "MeetingNotFound",
    "MeetingNotReady",
    "NotFound",
    "NotHost",
    "NotYourTurn",
    "OrganizationNotFound",
    "PersistenceUnavailable",
    "ReplyTimeout",
    "RunnerMoved",
    "SupervisorFailed",
    "TurnTimedOut",
    "WaitTimeout",
    "error_from_json",
    "error_to_json",
]


class AgentMessagingError(Exception):
    """Base class of every error agent-messaging raises on purpose."""


class ConfigurationError(AgentMessagingError):
    """The configuration is missing something or contradicts itself.

    Also what a database server that answered and refused the connection raises (wrong or missing
    password, unknown role or database, no ``pg_hba.conf`` entry): a person has to change the DSN or
    the server, and waiting would not help, unlike ``PersistenceUnavailable``.
    """


class InvalidArgument(AgentMessagingError, ValueError):
    """An argument is malformed: empty or over-long ids, control characters, wrong types."""


class InvalidMessage(AgentMessagingError, ValueError):
    """A message payload is not valid as the runtime's message type, or is too large."""


class NotFound(AgentMessagingError, LookupError):
    """Something looked up by id does not exist."""


class OrganizationNotFound(NotFound):
    """No organization has this external id."""

    def __init__(self, external_id: str) -> None:
        self.external_id = external_id
        super().__init__(
            f"organization {external_id!r} not found: check the id, or register it first "
            "(register_organization; exist_ok=True makes that safe to repeat)"
        )


class AgentNotFound(NotFound):
    """No (registered, not deregistered) agent has this external id."""

    def __init__(self, external_id: str) -> None:
        self.external_id = external_id
        super().__init__(
            f"agent {external_id!r} not found (never registered, or deregistered): check the id, or register it "
            "first (register_agent; exist_ok=True makes that safe to repeat)"
        )


class MeetingNotFound(NotFound):
    """No meeting has this id."""

    def __init__(self, meeting_id: UUID | str) -> None:
        self.meeting_id = meeting_id
        super().__init__(
            f"meeting {meeting_id} not found: use the id create_meeting returned "
            "(list_meetings, or 'agent-messaging meetings list', shows them)"
        )


class DeadLetterNotFound(NotFound):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: int | str) -> None:
        self.dead_letter_id = dead_letter_id
        super().__init__(
            f"dead letter {dead_letter_id} not found, or already retried: get_dead_letters (or "
            "'agent-messaging dead-letters list') shows the open ones"
        )


class AlreadyExists(AgentMessagingError):
    """An organization or agent with this external id is already registered.

    ``differences`` lists what the existing record has that a registration with
    ``exist_ok=True`` asked differently (empty without ``exist_ok``).
    """

    def __init__(self, kind: str, external_id: str, differences: Sequence[str] = ()) -> None:
        self.kind = kind
        self.external_id = external_id
        self.differences = list(differences)
        if self.differences:
            detail = (
                f"{kind} {external_id!r} already exists with a different " + "; ".join(self.differences) + ": "
                "exist_ok=True returns an existing record only when it matches; register it with the stored values "
                "or choose another external id"
                + (" (agent ids are unique across organizations)" if kind == "agent" else "")
            )
        else:
            detail = (
                f"{kind} {external_id!r} already exists: pass exist_ok=True to get the existing {kind} "
                "(a program that may run more than once), or choose another external id"
            )
        super().__init__(detail)


class InvalidOperation(AgentMessagingError):
    """The operation is not allowed in the current state."""


class CrossOrganization(InvalidOperation):
    """Agents of different organizations cannot message or meet each other."""

    def __init__(self, agent: str, other: str) -> None:
        self.agent = agent
        self.other = other
        super().__init__(
            f"agents {agent!r} and {other!r} belong to different organizations: agents message and meet only "
            "within their own organization"
        )


class NotHost(InvalidOperation):
    """A host-only meeting operation was attempted by another agent."""

    def __init__(self, agent: str, meeting_id: UUID, action: str = "do this") -> None:
        self.agent = agent
        self.meeting_id = meeting_id
        super().__init__(
            f"agent {agent!r} is not the host of meeting {meeting_id} and cannot {action}: only its host (the agent "
            "that created it) can"
        )


class NotYourTurn(InvalidOperation):
    """An agent tried to speak (or pass) without holding the floor, or before the meeting started.

    ``started`` is False when the meeting has not started yet (then nobody holds the floor).
    """

    def __init__(self, agent: str, meeting_id: UUID, floor_holder: str | None, *, started: bool | None = None) -> None:
        self.agent = agent
        self.meeting_id = meeting_id
        self.floor_holder = floor_holder
        self.started = floor_holder is not None if started is None else started
        if not self.started:
            detail = (
                f"meeting {meeting_id} has not started, so agent {agent!r} cannot speak yet: its host starts it "
                "with start_meeting; participants call attend_meeting and wait for their turn"
            )
        else:
            holder = f"{floor_holder!r} holds it" if floor_holder else "nobody holds it"
            detail = (
                f"agent {agent!r} does not hold the floor of meeting {meeting_id} ({holder}): wait for your turn "
                "(attend_meeting returns when it comes; so do speak and pass_turn)"
            )
        super().__init__(detail)


class TurnTimedOut(InvalidOperation):
    """An agent spoke after its turn had expired; the floor has moved on."""

    def __init__(self, agent: str, meeting_id: UUID) -> None:
        self.agent = agent
        self.meeting_id = meeting_id
        super().__init__(
            f"agent {agent!r}'s turn in meeting {meeting_id} timed out before it spoke, and the floor moved on: "
            "wait for the next turn (attend_meeting); a longer turn_duration gives more time"
        )


class MeetingNotReady(InvalidOperation):
    """The host tried to start a meeting before every participant was present."""

    def __init__(self, meeting_id: UUID, absent: Sequence[str]) -> None:
        self.meeting_id = meeting_id
        self.absent = list(absent)
        super().__init__(
            f"meeting {meeting_id} cannot start: absent participants {self.absent!r}; each must join first "
            "(attend_meeting, or be hosted with a turn handler), then start it again"
        )


class RunnerMoved(InvalidOperation):
    """The runtime that ran the meeting stopped running it while the call was under way: it was cut off from
    the database (another runtime may take the meeting over). The call may have taken effect just before
    (``get_meeting_status`` and the history say); calling ``attend_meeting`` reaches the meeting wherever it
    runs now and gives the floor holder its turn back."""

    def __init__(self, meeting_id: UUID) -> None:
        self.meeting_id = meeting_id
        super().__init__(
            f"meeting {meeting_id}: the runtime running it lost its database connection during this call, which "
            "may or may not have taken effect; call attend_meeting to wait for your next turn (get_meeting_status "
            "shows where the meeting is)"
        )


class LifecycleError(InvalidOperation):
    """An ``AgentMessaging`` instance was used in the wrong lifecycle state."""


class ReplyTimeout(AgentMessagingError, TimeoutError):
    """``send_and_wait`` got no reply before its timeout. A late reply lands in the sender's unread messages."""

    def __init__(self, sender: str, recipient: str, request_id: UUID, timeout: float, *, hosted: bool = True) -> None:
        self.sender = sender
        self.recipient = recipient
        self.request_id = request_id
        self.timeout = timeout
        self.hosted = hosted
        """Whether a running runtime hosted the recipient when the call timed out."""
        text = f"no reply from {recipient!r} to {sender!r} for request {request_id} within {timeout:g}s"
        if not hosted:
            text += (
                f": no running runtime hosts {recipient!r}; host it (register_handler, host, or 'agent-messaging "
                "run'), or have it read its requests (get_unread_messages) and reply"
            )
        super().__init__(text)


class WaitTimeout(AgentMessagingError, TimeoutError):
    """``wait_for_message`` saw no matching message before its timeout."""

    def __init__(self, agent: str, from_agent: str | None, timeout: float) -> None:
        self.agent = agent
        self.from_agent = from_agent
        self.timeout = timeout
        source = f" from {from_agent!r}" if from_agent else ""
        super().__init__(f"no message{source} for {agent!r} within {timeout:g}s")


class ConversationEnded(AgentMessagingError):
    """The conversation ended while the caller waited; ``message`` is the ending message, if any."""

    def __init__(self, agent_a: str, agent_b: str, conversation_id: UUID, message: Any = None) -> None:
        self.agent_a = agent_a
        self.agent_b = agent_b
        self.conversation_id = conversation_id
        self.message = message
        super().__init__(
            f"conversation {conversation_id} between {agent_a!r} and {agent_b!r} ended while waiting; sending "
            "again starts a new conversation"
        )


class MeetingEnded(AgentMessagingError):
    """The meeting has ended; no more turns can be taken in it."""

    def __init__(self, meeting_id: UUID) -> None:
        self.meeting_id = meeting_id
        super().__init__(f"meeting {meeting_id} has ended: no more turns; get_meeting_history still reads it")


class DeadlockDetected(AgentMessagingError):
    """A ``send_and_wait`` would close a cycle of agents waiting on each other inside their handlers."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(
            "deadlock: "
            + " -> ".join(self.cycle)
            + " would wait on each other forever; let one of them answer without waiting "
            "(return the reply from its handler, or use conversation.send instead of send_and_wait)"
        )


class HandlerError(AgentMessagingError):
    """The handler of a call raised; the request was answered with this error and the agent keeps running.

    ``error_type`` and ``error_message`` describe the handler's exception; ``remote_traceback``
    is its traceback as text, from the process that hosts the agent.
    """

    def __init__(
        self, agent: str, request_id: UUID | str, error_type: str, error_message: str, remote_traceback: str = ""
    ) -> None:
        self.agent = agent
        self.request_id = request_id
        self.error_type = error_type
        self.error_message = error_message
        self.remote_traceback = remote_traceback
        super().__init__(f"the handler of {agent!r} failed on request {request_id}: {error_type}: {error_message}")


class PersistenceUnavailable(AgentMessagingError):
    """The database could not be reached (or a write committed) within the configured time.

    A condition that may pass: the server is down, starting or overloaded. ``detail`` is the reason.
    """

    def __init__(self, detail: str, *, host: str | None = None) -> None:
        self.detail = detail
        self.host = host
        where = f" at {host}" if host else ""
        super().__init__(f"database unavailable{where}: {detail}")


class ActorError(AgentMessagingError):
    """Base class of the actor kernel's errors."""


class MailboxFull(ActorError):
    """``tell_nowait`` found the actor's mailbox full."""

    def __init__(self, actor: str, capacity: float) -> None:
        self.actor = actor
        self.capacity = capacity
        super().__init__(
            f"mailbox of actor {actor!r} is full ({capacity:g} messages): use tell, which waits for room, or "
            "give it a larger mailbox (Config.mailbox_size for hosted agents)"
        )


class ActorStopped(ActorError):
    """The actor stopped (or crashed) before it handled the message."""

    def __init__(self, actor: str, reason: str = "stopped before handling the message") -> None:
        self.actor = actor
        super().__init__(f"actor {actor!r} {reason}")


class SupervisorFailed(ActorError):
    """A supervisor's children failed more often than its restart intensity allows."""

    def __init__(self, supervisor: str, restarts: int, period: float, cause: BaseException | None = None) -> None:
        self.supervisor = supervisor
        self.restarts = restarts
        self.period = period
        self.cause = cause
        super().__init__(
            f"supervisor {supervisor!r} exceeded its restart intensity ({restarts} restarts in {period:g}s)"
            + (f": {cause!r}" if cause is not None else "")
        )


def error_to_json(exc: AgentMessagingError) -> dict[str, Any]:
    """A JSON-able description of ``exc``: its type name, message and attributes."""
    attrs = json.loads(json.dumps(vars(exc), default=str))
    return {"type": type(exc).__name__, "message": str(exc), "attrs": attrs}


def error_from_json(data: dict[str, Any]) -> AgentMessagingError:
    """The error :func:`error_to_json` described, as the same type with the same message and attributes.

    Ids come back as UUIDs where they were (attributes named ``*_id``); an unknown type comes back as
    ``AgentMessagingError``.
    """
    cls = _ERRORS.get(str(data.get("type")), AgentMessagingError)
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(data.get("message", "")))
    for name, value in dict(data.get("attrs") or {}).items():
        if name.endswith("_id") and isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = UUID(value)
        setattr(exc, name, value)
    return exc


_ERRORS: dict[str, type[AgentMessagingError]] = {
    name: obj for name, obj in list(globals().items()) if isinstance(obj, type) and issubclass(obj, AgentMessagingError)
}
