"""What the domain actors get from the runtime: database, writer, directory, codec, signals.

One ``Services`` object per open runtime; the facades (``am.one_way``,
``am.conversation``, ``am.meeting``) and actors hold it instead of the runtime.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup
from pydantic import TypeAdapter, ValidationError

from .._validation import check_id
from ..config import Config
from ..errors import AgentNotFound, CrossOrganization, InvalidMessage
from ..models import Agent
from ..persistence.database import Database
from ..persistence.repositories import AgentRepository
from ..persistence.writer import Writer

__all__ = ["Codec", "Directory", "Services", "Signals"]

T = TypeVar("T")


class Codec(Generic[T]):
    """Validates payloads as ``T`` and turns them into JSON text (and back), enforcing the size limit."""

    def __init__(self, message_type: Any, max_bytes: int) -> None:
        self.message_type = message_type
        self.max_bytes = max_bytes
        self._adapter: TypeAdapter[T] = TypeAdapter(message_type)

    def prepare(self, payload: object, what: str = "message") -> tuple[T, str]:
        """``payload`` validated as ``T`` and its JSON text; ``InvalidMessage`` if invalid or too large."""
        try:
            value = self._adapter.validate_python(payload)
            data = self._adapter.dump_json(value)
        except (ValidationError, ValueError, TypeError) as exc:
            raise InvalidMessage(f"{what} is not a valid {_type_name(self.message_type)}: {exc}") from None
        if len(data) > self.max_bytes:
            raise InvalidMessage(f"{what} is {len(data)} bytes serialized; the limit is {self.max_bytes}")
        return value, data.decode()

    def decode(self, data: Any) -> T:
        """``T`` from a jsonb value read back from the database."""
        if isinstance(data, str | bytes) and not _is_str_type(self.message_type):
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        return self._adapter.validate_python(data)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _is_str_type(tp: Any) -> bool:
    return tp is str


class Directory:
    """Resolves agent external ids to live agents (cached) and checks organizations."""

    def __init__(self, repo: AgentRepository) -> None:
        self.repo = repo
        self._cache: dict[str, Agent] = {}
        self._by_id: dict[uuid.UUID, Agent] = {}

    def forget(self, external_id: str) -> None:
        """Drop a cached agent (after it was deregistered)."""
        agent = self._cache.pop(external_id, None)
        if agent is not None:
            self._by_id.pop(agent.id, None)

    def remember(self, agent: Agent) -> None:
        """Cache an agent."""
        self._cache[agent.external_id] = agent
        self._by_id[agent.id] = agent

    async def get(self, external_id: object, what: str = "agent") -> Agent:
        """The live agent with this external id; ``AgentNotFound`` / ``InvalidArgument`` otherwise."""
        key = check_id(external_id, what)
        agent = self._cache.get(key)
        if agent is None:
            agent = await self.repo.get(key)  # live agents only
            self.remember(agent)
        return agent

    async def get_many(self, external_ids: Sequence[str]) -> list[Agent]:
        """Live agents for ``external_ids`` (validated), in order; ``AgentNotFound`` names the first missing."""
        missing = [x for x in external_ids if x not in self._cache]
        if missing:
            for agent in (await self.repo.get_many(missing)).values():
                self.remember(agent)
        result = []
        for x in external_ids:
            found = self._cache.get(x)
            if found is None:
                raise AgentNotFound(x)
            result.append(found)
        return result

    async def by_id(self, agent_id: uuid.UUID | str) -> Agent:
        """An agent by internal id (also deregistered ones)."""
        key = agent_id if isinstance(agent_id, uuid.UUID) else uuid.UUID(agent_id)
        agent = self._by_id.get(key)
        if agent is None:
            found = await self.repo.by_ids([key])
            agent = next(iter(found.values()), None)
            if agent is None:
                raise AgentNotFound(str(agent_id))
            self._by_id[key] = agent
        return agent

    @staticmethod
    def same_organization(agent: Agent, others: Iterable[Agent]) -> None:
        """``CrossOrganization`` if any of ``others`` is in another organization than ``agent``."""
        for other in others:
            if other.organization_id != agent.organization_id:
                raise CrossOrganization(agent.external_id, other.external_id)


def remote_key(key: str | uuid.UUID) -> str:
    """The signal key fired only for news from other processes (NOTIFY) and by the sweep."""
    return f"remote:{key}"


class Signals:
    """In-process wake-ups: a waiter on a key is woken when someone :meth:`fire` s that key.

    Keys are strings (an agent id, ``"meeting:<id>"``). The NOTIFY listener fires
    the same keys for news from other processes.
    """

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def event(self, key: str) -> anyio.Event:
        """The event the next :meth:`fire` of ``key`` sets (wait on it after checking the database)."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        return event

    def fire(self, keys: Iterable[str]) -> None:
        """Wake everyone waiting on any of ``keys``."""
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def fire_all(self) -> None:
        """Wake every waiter (a NOTIFY said '*', or the poll period passed)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()


@dataclass
class Services(Generic[T]):
    """Everything the domain actors and facades need from an open runtime."""

    config: Config
    db: Database
    writer: Writer
    directory: Directory
    codec: Codec[T]
    signals: Signals
    task_group: TaskGroup
    extras: dict[str, Any] = field(default_factory=dict)
