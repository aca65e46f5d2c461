"""The handler registry: who is hosted here and with what code.

It belongs to one ``AgentMessaging`` instance (never global) and may be filled
before or after the runtime is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..models import MeetingEvent, MeetingEventType, Turn
from .supervisor import RestartType

if TYPE_CHECKING:
    from ..actors.agent import Agent, MessageContext

__all__ = ["EventHandler", "HandlerFn", "HostSpec", "Registry", "TurnHandler"]

T = TypeVar("T")
HandlerFn = Callable[[Any, "MessageContext[Any]"], Awaitable[Any]]
TurnHandler = Callable[[Turn[Any]], Awaitable[Any]]
EventHandler = Callable[[MeetingEvent[Any]], Awaitable[None]]


@dataclass
class HostSpec:
    """How one agent is hosted: a handler function or an ``Agent`` class (fresh instance per restart)."""

    agent: str
    handler: HandlerFn | None = None
    agent_class: type[Agent[Any]] | None = None
    restart: RestartType = RestartType.PERMANENT

    def make(self) -> Agent[Any]:
        """A fresh ``Agent`` instance for this spec (a function is wrapped in one)."""
        from ..actors.agent import FunctionAgent

        if self.agent_class is not None:
            instance: Agent[Any] = self.agent_class()
            return instance
        assert self.handler is not None
        return FunctionAgent(self.handler)


@dataclass
class Registry(Generic[T]):
    """Hosted agents, turn handlers and meeting event handlers of one runtime."""

    hosts: dict[str, HostSpec] = field(default_factory=dict)
    turn_handlers: dict[str, TurnHandler] = field(default_factory=dict)
    event_handlers: dict[MeetingEventType | None, list[EventHandler]] = field(default_factory=dict)

    def has_turn_handler(self, agent: str) -> bool:
        """Whether ``agent``'s meeting turns are taken here (without building its class)."""
        if agent in self.turn_handlers:
            return True
        spec = self.hosts.get(agent)
        return spec is not None and spec.agent_class is not None and _has_on_turn(spec.agent_class)

    def turn_handler(self, agent: str) -> TurnHandler | None:
        """The code that takes ``agent``'s meeting turns here, if any (a function or its class's ``on_turn``)."""
        fn = self.turn_handlers.get(agent)
        if fn is not None:
            return fn
        if not self.has_turn_handler(agent):
            return None
        agent_class = self.hosts[agent].agent_class
        assert agent_class is not None
        return agent_class().on_turn

    def event_handlers_for(self, event_type: MeetingEventType) -> list[EventHandler]:
        """Handlers registered for this type and for every type."""
        return [*self.event_handlers.get(event_type, []), *self.event_handlers.get(None, [])]


def _has_on_turn(cls: type[Any]) -> bool:
    from ..actors.agent import Agent

    return getattr(cls, "on_turn", None) is not getattr(Agent, "on_turn", None)
