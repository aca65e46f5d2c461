"""What the domain gets from the runtime: one typed :class:`Services` per open runtime.

The composition root (:mod:`agent_messaging._app`) builds it; the facades
(``am.one_way``, ``am.conversation``, ``am.meeting``), the agent host and the
actors hold it instead of the runtime. Its parts: the database and the
group-commit writer, this runtime's presence, the agent :class:`Directory`
(external ids to live agents), the payload :class:`Codec`, in-process
:class:`~.news.Signals` and the :class:`~.news.News` of other processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from .._validation import check_id, json_text
from ..config import Config
from ..errors import AgentNotFound, CrossOrganization, InvalidMessage
from ..models import AgentInfo
from ..persistence.database import Database
from ..persistence.presence import Presence
from ..persistence.store.agents import Agents
from ..persistence.store.messages import deregistered_recipient
from ..persistence.writer import Writer
from .news import News, Signals

__all__ = ["Codec", "Directory", "Services"]

T = TypeVar("T")


class Codec(Generic[T]):
    """Turns payloads into the JSON text stored in ``jsonb`` and back, so that what is acknowledged reads back the same.

    :meth:`prepare` validates a payload as ``T`` and returns it *as it will read back*, with its JSON
    text: every delivery of a message (straight after its commit, or read again from the database)
    hands the handler an equal value. Untyped runtimes (``T`` is ``Any`` or ``object``) take any JSON
    value; Python values JSON spells differently (tuples, non-str keys, datetimes, models) arrive in
    their JSON form. What PostgreSQL cannot store is refused with ``InvalidMessage`` naming the path
    inside the payload (see :func:`agent_messaging._validation.json_text` and ``docs/limits.md``).
    """

    def __init__(self, message_type: Any, max_bytes: int) -> None:
        self.message_type = message_type
        self.max_bytes = max_bytes
        self.untyped = message_type is Any or message_type is object
        self._adapter: TypeAdapter[T] = TypeAdapter(message_type)

    def prepare(self, payload: object, what: str = "message") -> tuple[T, str]:
        """``payload`` as ``T`` read back from its JSON text, and that text.

        :raises InvalidMessage: not a valid ``T``, not storable (the message names the path inside it),
            or larger than ``Config.max_message_bytes``.
        """
        if self.untyped:
            data: Any = payload
        else:
            try:
                data = self._adapter.dump_python(self._adapter.validate_python(payload), mode="json")
            except (ValidationError, ValueError, TypeError, RecursionError) as exc:
                raise InvalidMessage(f"{what} is not a valid {_type_name(self.message_type)}: {exc}") from None
        text = json_text(
            data,
            what,
            InvalidMessage,
            max_bytes=self.max_bytes,
            setting="Config.max_message_bytes; raise it with AGENT_MESSAGING_MAX_MESSAGE_BYTES to send larger ones",
        )
        return self.decode(text, what), text

    def decode(self, data: Any, what: str = "stored message") -> T:
        """``T`` from the JSON text of a stored payload (a jsonb column selected ``::text``).

        :raises InvalidMessage: the text is not JSON, or not a valid ``T`` (a row written by another
            client or an older version of the message type).
        """
        try:
            if isinstance(data, str | bytes | bytearray):
                if self.untyped:
                    value: T = from_json(data)
                    return value
                return self._adapter.validate_json(data)
            return self._adapter.validate_python(data)
        except (ValidationError, ValueError, TypeError, RecursionError) as exc:
            raise InvalidMessage(f"{what} is not a valid {_type_name(self.message_type)}: {_brief(exc)}") from None


def _brief(exc: BaseException, limit: int = 500) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    def refused(self, exc: BaseException, targets: dict[uuid.UUID, str]) -> None:
        """If the database refused a write because one of ``targets`` (id -> external id) was deregistered (by
        any runtime), forget it and raise ``AgentNotFound`` for it; otherwise return (the caller re-raises)."""
        agent_id = deregistered_recipient(exc)
        if agent_id is not None and agent_id in targets:
            self.forget(targets[agent_id])
            raise AgentNotFound(targets[agent_id]) from None

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
    tracing: bool = False
    """Spans and trace contexts on (``Config.tracing``): the domain calls :mod:`.._tracing` only then."""
