"""agent-messaging: durable messaging between AI agents on PostgreSQL.

Notes (one-way), calls (send and wait), chats (send now, read later) and
turn-based meetings, on an actor runtime that writes everything through to
PostgreSQL. Runs on asyncio and trio.
"""

from importlib.metadata import PackageNotFoundError, version

from . import errors as errors
from .config import Config as Config
from .errors import (
    AgentMessagingError as AgentMessagingError,
    AgentNotFound as AgentNotFound,
    AlreadyExists as AlreadyExists,
    ConfigurationError as ConfigurationError,
    InvalidArgument as InvalidArgument,
    OrganizationNotFound as OrganizationNotFound,
    PersistenceUnavailable as PersistenceUnavailable,
)
from .models import Agent as Agent, AgentStatus as AgentStatus, Organization as Organization
from .runtime.runtime import AgentMessaging as AgentMessaging, RuntimeState as RuntimeState

try:
    __version__ = version("agent-messaging")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Agent",
    "AgentMessaging",
    "AgentMessagingError",
    "AgentNotFound",
    "AgentStatus",
    "AlreadyExists",
    "Config",
    "ConfigurationError",
    "InvalidArgument",
    "Organization",
    "OrganizationNotFound",
    "PersistenceUnavailable",
    "RuntimeState",
    "__version__",
    "errors",
]
