"""The handler registry: who is hosted here and with what code.

It belongs to one ``AgentMessaging`` instance (never global) and may be filled
before or after the runtime is opened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..models import MeetingEvent, MeetingEventType, Turn
from ..runtime.supervisor import RestartType
from .agent import Agent, FunctionAgent, MessageContext

__all__ = ["EventHandler", "HandlerFn", "HostSpec", "Registry", "TurnHandler"]

T = TypeVar("T")
#: A message handler: ``async def handler(message, ctx) -> reply | None`` (``register_handler``).
HandlerFn = Callable[[Any, MessageContext[Any]], Awaitable[Any]]
#: A meeting turn handler: ``async def on_turn(turn) -> message | None`` (None passes the floor).
TurnHandler = Callable[[Turn[Any]], Awaitable[Any]]
#: A meeting event handler: ``async def handler(event) -> None`` (``on_meeting_event``).
EventHandler = Callable[[MeetingEvent[Any]], Awaitable[None]]


@dataclass
class HostSpec:
    """How one agent is hosted: a handler function, an ``Agent`` class (fresh instance per restart)
    or an ``Agent`` instance (the same one across restarts)."""

    agent: str
    handler: HandlerFn | None = None
    agent_class: type[Agent[Any]] | None = None
    instance: Agent[Any] | None = None
    restart: RestartType = RestartType.PERMANENT
    turns_only: bool = False
    """Only its meeting turns are taken here (``register_turn_handler``): no handler for its messages."""

    def make(self) -> Agent[Any]:
        """The ``Agent`` instance for a (re)start of this agent (a function is wrapped in one)."""
        if self.instance is not None:
            return self.instance
        if self.agent_class is not None:
            made: Agent[Any] = self.agent_class()
            return made
        assert self.handler is not None
        return FunctionAgent(self.handler)


@dataclass
class Registry(Generic[T]):
    """Hosted agents, turn handlers and meeting event handlers of one runtime."""

    hosts: dict[str, HostSpec] = field(default_factory=dict)
    turn_handlers: dict[str, TurnHandler] = field(default_factory=dict)
    event_handlers: dict[MeetingEventType | None, list[EventHandler]] = field(default_factory=dict)

    def specs(self) -> list[HostSpec]:
        """What to host: every hosted agent, plus a turns-only spec for agents that only have a turn handler."""
        turns_only = [HostSpec(agent=name, turns_only=True) for name in self.turn_handlers if name not in self.hosts]
        return [*self.hosts.values(), *turns_only]

    def turn_agents(self) -> list[str]:
        """The agents whose meeting turns a handler here takes."""
        return [name for name in {*self.turn_handlers, *self.hosts} if self.has_turn_handler(name)]

    def has_turn_handler(self, agent: str) -> bool:
        """Whether ``agent``'s meeting turns are taken here (without building its class)."""
        if agent in self.turn_handlers:
            return True
        spec = self.hosts.get(agent)
        if spec is None:
            return False
        cls = type(spec.instance) if spec.instance is not None else spec.agent_class
        return cls is not None and _has_on_turn(cls)

    def turn_handler(self, agent: str) -> TurnHandler | None:
        """The code that takes ``agent``'s meeting turns here, if any (a function or its agent's ``on_turn``)."""
        fn = self.turn_handlers.get(agent)
        if fn is not None:
            return fn
        if not self.has_turn_handler(agent):
            return None
        spec = self.hosts[agent]
        return spec.instance.on_turn if spec.instance is not None else spec.make().on_turn

    def event_handlers_for(self, event_type: MeetingEventType) -> list[EventHandler]:
        """Handlers registered for this type and for every type."""
        return [*self.event_handlers.get(event_type, []), *self.event_handlers.get(None, [])]


def _has_on_turn(cls: type[Any]) -> bool:
    return getattr(cls, "on_turn", None) is not getattr(Agent, "on_turn", None)
