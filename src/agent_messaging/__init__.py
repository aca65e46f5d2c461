"""agent-messaging: durable messaging between AI agents on PostgreSQL.

Notes (one-way), calls (send and wait), chats (send now, read later) and
turn-based meetings, on an actor runtime that writes everything through to
PostgreSQL. Runs on asyncio and trio.

``Agent`` is the base class of hosted agents (``class Bob(Agent[Msg])``);
``AgentInfo`` is the registered-agent record that ``register_agent`` and
``get_agent`` return; ``AgentSession(am, "alice")`` makes every operation as
alice and only as alice (what the MCP server and LLM agents' tools use).
Optional layers: ``agent_messaging.llm`` (extra ``[llm]``) and
``agent_messaging.mcp`` (extra ``[mcp]``).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError, version as _version

from . import errors as errors
from ._acting import AgentSession as AgentSession
from ._app import AgentMessaging as AgentMessaging, RuntimeState as RuntimeState
from .actors.agent import Agent as Agent, MessageContext as MessageContext
from .actors.conversation import Conversations as Conversations
from .actors.meeting import Meetings as Meetings, Selector as Selector
from .actors.one_way import OneWay as OneWay
from .actors.registry import EventHandler as EventHandler, HandlerFn as HandlerFn, TurnHandler as TurnHandler
from .config import Config as Config
from .errors import (
    ActorError as ActorError,
    ActorStopped as ActorStopped,
    AgentMessagingError as AgentMessagingError,
    AgentNotFound as AgentNotFound,
    AlreadyExists as AlreadyExists,
    ConfigurationError as ConfigurationError,
    ConversationEnded as ConversationEnded,
    CrossOrganization as CrossOrganization,
    DeadLetterNotFound as DeadLetterNotFound,
    DeadlockDetected as DeadlockDetected,
    HandlerError as HandlerError,
    InvalidArgument as InvalidArgument,
    InvalidMessage as InvalidMessage,
    InvalidOperation as InvalidOperation,
    LifecycleError as LifecycleError,
    MailboxFull as MailboxFull,
    MeetingEnded as MeetingEnded,
    MeetingNotFound as MeetingNotFound,
    MeetingNotReady as MeetingNotReady,
    NotFound as NotFound,
    NotHost as NotHost,
    NotYourTurn as NotYourTurn,
    OrganizationNotFound as OrganizationNotFound,
    PersistenceUnavailable as PersistenceUnavailable,
    ReplyTimeout as ReplyTimeout,
    RunnerMoved as RunnerMoved,
    SupervisorFailed as SupervisorFailed,
    TurnTimedOut as TurnTimedOut,
    WaitTimeout as WaitTimeout,
)
from .models import (
    AgentInfo as AgentInfo,
    AgentStatus as AgentStatus,
    DeadLetter as DeadLetter,
    MeetingEvent as MeetingEvent,
    MeetingEventType as MeetingEventType,
    MeetingState as MeetingState,
    MeetingStatus as MeetingStatus,
    Message as Message,
    MessageKind as MessageKind,
    Organization as Organization,
    Participant as Participant,
    ParticipantStatus as ParticipantStatus,
    Turn as Turn,
)
from .runtime.supervisor import RestartType as RestartType

try:
    __version__ = _version("agent-messaging")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ActorError",
    "ActorStopped",
    "Agent",
    "AgentInfo",
    "AgentMessaging",
    "AgentMessagingError",
    "AgentNotFound",
    "AgentSession",
    "AgentStatus",
    "AlreadyExists",
    "Config",
    "ConfigurationError",
    "ConversationEnded",
    "Conversations",
    "CrossOrganization",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadlockDetected",
    "EventHandler",
    "HandlerError",
    "HandlerFn",
    "InvalidArgument",
    "InvalidMessage",
    "InvalidOperation",
    "LifecycleError",
    "MailboxFull",
    "MeetingEnded",
    "MeetingEvent",
    "MeetingEventType",
    "MeetingNotFound",
    "MeetingNotReady",
    "MeetingState",
    "MeetingStatus",
    "Meetings",
    "Message",
    "MessageContext",
    "MessageKind",
    "NotFound",
    "NotHost",
    "NotYourTurn",
    "OneWay",
    "Organization",
    "OrganizationNotFound",
    "Participant",
    "ParticipantStatus",
    "PersistenceUnavailable",
    "ReplyTimeout",
    "RestartType",
    "RunnerMoved",
    "RuntimeState",
    "Selector",
    "SupervisorFailed",
    "Turn",
    "TurnHandler",
    "TurnTimedOut",
    "WaitTimeout",
    "__version__",
    "errors",
]
