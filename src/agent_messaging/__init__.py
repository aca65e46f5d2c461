"""agent-messaging: durable messaging between AI agents on PostgreSQL.

Notes (one-way), calls (send and wait), chats (send now, read later) and
turn-based meetings, on an actor runtime that writes everything through to
PostgreSQL. Runs on asyncio and trio.

``Agent`` is the base class of hosted agents (``class Bob(Agent[Msg])``);
``AgentInfo`` is the registered-agent record that ``register_agent`` and
``get_agent`` return.
"""

from importlib.metadata import PackageNotFoundError, version

from . import errors as errors
from .actors.agent import Agent as Agent, MessageContext as MessageContext
from .config import Config as Config
from .errors import (
    ActorStopped as ActorStopped,
    AgentMessagingError as AgentMessagingError,
    AgentNotFound as AgentNotFound,
    AlreadyExists as AlreadyExists,
    ConfigurationError as ConfigurationError,
    ConversationEnded as ConversationEnded,
    CrossOrganization as CrossOrganization,
    DeadLetterNotFound as DeadLetterNotFound,
    DeadlockDetected as DeadlockDetected,
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
    TurnTimedOut as TurnTimedOut,
    WaitTimeout as WaitTimeout,
)
from .models import (
    Agent as AgentInfo,
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
from .runtime.runtime import AgentMessaging as AgentMessaging, RuntimeState as RuntimeState

try:
    __version__ = version("agent-messaging")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ActorStopped",
    "Agent",
    "AgentInfo",
    "AgentMessaging",
    "AgentMessagingError",
    "AgentNotFound",
    "AgentStatus",
    "AlreadyExists",
    "Config",
    "ConfigurationError",
    "ConversationEnded",
    "CrossOrganization",
    "DeadLetter",
    "DeadLetterNotFound",
    "DeadlockDetected",
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
    "Message",
    "MessageContext",
    "MessageKind",
    "NotFound",
    "NotHost",
    "NotYourTurn",
    "Organization",
    "OrganizationNotFound",
    "Participant",
    "ParticipantStatus",
    "PersistenceUnavailable",
    "ReplyTimeout",
    "RuntimeState",
    "Turn",
    "TurnTimedOut",
    "WaitTimeout",
    "__version__",
    "errors",
]
