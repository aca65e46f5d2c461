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
from .actors.agent import Agent as Agent
from .actors.agent import MessageContext as MessageContext
from .config import Config as Config
from .errors import (
    ActorStopped as ActorStopped,
)
from .errors import (
    AgentMessagingError as AgentMessagingError,
)
from .errors import (
    AgentNotFound as AgentNotFound,
)
from .errors import (
    AlreadyExists as AlreadyExists,
)
from .errors import (
    ConfigurationError as ConfigurationError,
)
from .errors import (
    ConversationEnded as ConversationEnded,
)
from .errors import (
    CrossOrganization as CrossOrganization,
)
from .errors import (
    DeadLetterNotFound as DeadLetterNotFound,
)
from .errors import (
    DeadlockDetected as DeadlockDetected,
)
from .errors import (
    InvalidArgument as InvalidArgument,
)
from .errors import (
    InvalidMessage as InvalidMessage,
)
from .errors import (
    InvalidOperation as InvalidOperation,
)
from .errors import (
    LifecycleError as LifecycleError,
)
from .errors import (
    MailboxFull as MailboxFull,
)
from .errors import (
    MeetingEnded as MeetingEnded,
)
from .errors import (
    MeetingNotFound as MeetingNotFound,
)
from .errors import (
    MeetingNotReady as MeetingNotReady,
)
from .errors import (
    NotFound as NotFound,
)
from .errors import (
    NotHost as NotHost,
)
from .errors import (
    NotYourTurn as NotYourTurn,
)
from .errors import (
    OrganizationNotFound as OrganizationNotFound,
)
from .errors import (
    PersistenceUnavailable as PersistenceUnavailable,
)
from .errors import (
    ReplyTimeout as ReplyTimeout,
)
from .errors import (
    TurnTimedOut as TurnTimedOut,
)
from .errors import (
    WaitTimeout as WaitTimeout,
)
from .models import (
    Agent as AgentInfo,
)
from .models import (
    AgentStatus as AgentStatus,
)
from .models import (
    DeadLetter as DeadLetter,
)
from .models import (
    MeetingEvent as MeetingEvent,
)
from .models import (
    MeetingEventType as MeetingEventType,
)
from .models import (
    MeetingState as MeetingState,
)
from .models import (
    MeetingStatus as MeetingStatus,
)
from .models import (
    Message as Message,
)
from .models import (
    MessageKind as MessageKind,
)
from .models import (
    Organization as Organization,
)
from .models import (
    Participant as Participant,
)
from .models import (
    ParticipantStatus as ParticipantStatus,
)
from .models import (
    Turn as Turn,
)
from .runtime.runtime import AgentMessaging as AgentMessaging
from .runtime.runtime import RuntimeState as RuntimeState

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
