"""Agents as classes: ``class Bob(Agent[Msg])`` with ``on_start``, ``on_message``, ``on_turn``, ``on_stop``.

The runtime makes a fresh instance each time it (re)starts the agent (or
reuses the instance it was given), and calls the hooks from the agent's own
actor task, one message at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from ..models import MessageKind, Turn

__all__ = ["Agent", "FunctionAgent", "MessageContext"]

T = TypeVar("T")


@dataclass(frozen=True)
class MessageContext(Generic[T]):
    """What a handler knows about the message it handles.

    ``message_id`` is stable across redeliveries (delivery is at-least-once:
    de-duplicate on it); ``attempt`` counts from 1.
    """

    agent: str
    sender: str
    message_id: UUID
    kind: MessageKind
    attempt: int
    created_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    conversation_id: UUID | None = None
    meeting_id: UUID | None = None
    in_reply_to: UUID | None = None
    seq: int = 0


class Agent(Generic[T]):
    """Base class of hosted agents. Override the hooks you need.

    - ``on_start``: run by the agent's actor before its first message (and after
      each restart, on the fresh instance). If it raises, the start counts as a
      crash and the supervisor restarts the agent with backoff.
    - ``on_message``: run for each delivered message, one at a time, in order.
      Its non-None return value answers a call (``send_and_wait``). If it
      raises, the attempt count goes up and the agent is restarted and the
      message retried; after ``max_attempts`` it is dead-lettered.
    - ``on_turn``: run when the agent holds the floor in a meeting it attends;
      what it returns is spoken (None passes the floor).
    - ``on_stop``: run when the agent stops normally (runtime closing); errors
      are logged and ignored.

    The runtime sets two attributes on the instance: :attr:`messaging` (the
    ``AgentMessaging`` runtime that hosts it, to send, call or meet from the
    hooks) and :attr:`agent_id` (the agent's external id). Host a class
    (``am.host("bob", Bob)``) for a fresh instance per (re)start, which gets them
    before its ``on_start``; or an instance (``am.host("bob", Bob(...))``) to keep
    one across restarts and for its meeting turns, which gets them when
    ``host()`` is called. (A class's ``on_turn`` runs on an instance of its own,
    made for the meeting, which has neither: host an instance when ``on_turn``
    needs them.)
    """

    messaging: Any
    """The ``AgentMessaging`` runtime hosting this agent (set by ``host()`` on an instance, else before on_start)."""
    agent_id: str
    """The external id this instance is hosted as (set with :attr:`messaging`)."""

    async def on_start(self) -> None:
        """Called before the first message of this instance."""

    async def on_message(self, message: T, ctx: MessageContext[T]) -> T | None:
        """Handle one message; return a reply for calls, or None."""
        return None

    async def on_turn(self, turn: Turn[T]) -> T | None:
        """Speak in a meeting: return what to say, or None to pass the floor."""
        return None

    async def on_stop(self) -> None:
        """Called when the agent stops normally."""


class FunctionAgent(Agent[Any]):
    """An ``Agent`` around a plain handler function ``async def handler(message, ctx)``."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    async def on_message(self, message: Any, ctx: MessageContext[Any]) -> Any:
        """Call the handler function."""
        return await self._handler(message, ctx)
