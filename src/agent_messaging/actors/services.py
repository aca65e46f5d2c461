"""What the domain gets from the runtime: one typed :class:`Services` per open runtime.

The composition root (:mod:`agent_messaging._app`) builds it; the facades
(``am.one_way``, ``am.conversation``, ``am.meeting``), the agent host and the
actors hold it instead of the runtime. Its parts: the database and the
group-commit writer, this runtime's presence, the agent :class:`Directory`
(external ids to live agents), the payload :class:`Codec`, in-process
:class:`~.news.Signals` and the :class:`~.news.News` of other processes.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from .._validation import check_id
from ..config import Config
from ..errors import AgentNotFound, CrossOrganization, InvalidMessage
from ..models import AgentInfo
from ..persistence.database import Database
from ..persistence.presence import Presence
from ..persistence.store.agents import Agents
from ..persistence.writer import Writer
from .news import News, Signals

__all__ = ["Codec", "Directory", "Services"]

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
        if isinstance(data, str | bytes) and self.message_type is not str:
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        return self._adapter.validate_python(data)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


class Directory:
    """Resolves agent external ids to live agents (cached) and checks organizations."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self._cache: dict[str, AgentInfo] = {}
        self._by_id: dict[uuid.UUID, AgentInfo] = {}

    def forget(self, external_id: str) -> None:
        """Drop a cached agent (after it was deregistered)."""
        agent = self._cache.pop(external_id, None)
        if agent is not None:
            self._by_id.pop(agent.id, None)

    def remember(self, agent: AgentInfo) -> None:
        """Cache an agent."""
        self._cache[agent.external_id] = agent
        self._by_id[agent.id] = agent

    async def get(self, external_id: object, what: str = "agent") -> AgentInfo:
        """The live agent with this external id; ``AgentNotFound`` / ``InvalidArgument`` otherwise."""
        key = check_id(external_id, what)
        agent = self._cache.get(key)
        if agent is None:
            agent = await self.agents.get(key)  # live agents only
            self.remember(agent)
        return agent

    async def get_many(self, external_ids: Sequence[str]) -> list[AgentInfo]:
        """Live agents for ``external_ids`` (validated), in order; ``AgentNotFound`` names the first missing."""
        missing = [x for x in external_ids if x not in self._cache]
        if missing:
            for agent in (await self.agents.get_many(missing)).values():
                self.remember(agent)
        result = []
        for x in external_ids:
            found = self._cache.get(x)
            if found is None:
                raise AgentNotFound(x)
            result.append(found)
        return result

    async def by_id(self, agent_id: uuid.UUID) -> AgentInfo:
        """An agent by internal id (also deregistered ones)."""
        agent = self._by_id.get(agent_id)
        if agent is None:
            found = await self.agents.by_ids([agent_id])
            agent = found.get(agent_id)
            if agent is None:
                raise AgentNotFound(str(agent_id))
            self._by_id[agent_id] = agent
        return agent

    @staticmethod
    def same_organization(agent: AgentInfo, others: Iterable[AgentInfo]) -> None:
        """``CrossOrganization`` if any of ``others`` is in another organization than ``agent``."""
        for other in others:
            if other.organization_id != agent.organization_id:
                raise CrossOrganization(agent.external_id, other.external_id)


@dataclass(frozen=True, eq=False)
class Services(Generic[T]):
    """Everything the domain needs from an open runtime."""

    config: Config
    runtime_id: str
    """This runtime's id: its NOTIFYs carry it, so its own listener ignores them."""
    db: Database
    writer: Writer
    presence: Presence
    directory: Directory
    codec: Codec[T]
    signals: Signals
    news: News
