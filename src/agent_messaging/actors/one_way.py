"""One-way messages (notes and fan-out), message queries and dead letters: ``am.one_way``.

``send`` validates everything first, writes one row per recipient in one
commit (all or none), returns after the commit, then hands each message to
the recipient's agent actor if it is hosted here (others learn of it through
NOTIFY or the sweep; a recipient hosted nowhere keeps it unread).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskStatus

from .._validation import check_ids, check_limit, check_metadata
from ..errors import DeadLetterNotFound, InvalidArgument
from ..models import Agent as AgentModel
from ..models import DeadLetter, Message, MessageKind
from ..runtime._listener import run_listener, run_sweeper
from ..runtime._services import Services
from ..runtime.registry import HostSpec, Registry
from ._delivery import insert_write, new_envelope, page_messages
from ._host import AgentHost

__all__ = ["OneWay"]

T = TypeVar("T")


class OneWay(Generic[T]):
    """One-way messaging and message queries. Reached as ``am.one_way``."""

    def __init__(self, services: Services[T], registry: Registry[T]) -> None:
        self.services = services
        self.runtime_id = services.writer.origin
        self.host_runtime: AgentHost[T] = AgentHost(services, registry, self.runtime_id)
        services.extras["agent_host"] = self.host_runtime
        #: callbacks for news from other processes (agent ids) and for the sweep (None); others may add theirs
        self.news_subscribers: list[Callable[[list[str] | None], None]] = [self.host_runtime.on_news]
        services.extras["news_subscribers"] = self.news_subscribers

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the agent host, the NOTIFY listener and the sweep (owned by the runtime's task group)."""
        subscribers = self.news_subscribers
        async with anyio.create_task_group() as tg:
            if self.services.config.notify:
                await tg.start(run_listener, self.services, self.runtime_id, subscribers)
            await tg.start(run_sweeper, self.services, subscribers)
            await tg.start(self.host_runtime.run)
            task_status.started()

    def host_soon(self, spec: HostSpec) -> None:
        """Host one more agent soon (a handler registered on an open runtime; batched with its neighbours)."""
        self.host_runtime.host_soon(spec)

    async def drain(self) -> None:
        """Stop the hosted agents gracefully (running handlers finish; unhandled messages stay unread)."""
        await self.host_runtime.drain()

    # ------------------------------------------------------------------ send

    async def send(
        self,
        sender: str,
        recipients: str | Sequence[str],
        message: T,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> list[uuid.UUID]:
        """Send ``message`` from ``sender`` to each recipient; returns the message ids once committed.

        :raises AgentNotFound: the sender or a recipient is not a registered agent.
        :raises CrossOrganization: a recipient belongs to another organization.
        :raises InvalidMessage: the payload is not a valid ``T`` or is too large.
        :raises InvalidArgument: malformed ids or metadata.
        """
        names = check_ids(recipients)
        meta = check_metadata(metadata)
        agent = await self.services.directory.get(sender, "sender")
        targets = await self.services.directory.get_many(names)
        self.services.directory.same_organization(agent, targets)
        value, text = self.services.codec.prepare(message)
        envs = [new_envelope(MessageKind.ONE_WAY, agent, target, value, text, metadata=meta) for target in targets]
        keys = [str(env.recipient_id) for env in envs]
        await self.services.writer.write([insert_write(env) for env in envs], notify=keys)
        await self.host_runtime.committed(envs)
        return [env.id for env in envs]

    # --------------------------------------------------------------- queries

    async def get_sent_messages(self, agent: str, *, limit: int = 100, before: int | None = None) -> list[Message[T]]:
        """Messages ``agent`` sent, newest first; page with ``before`` = the last ``seq`` seen."""
        who = await self.services.directory.get(agent)
        return await self._page("m.sender_id = $1", [who.id], limit, before)

    async def get_received_messages(
        self, agent: str, *, include_read: bool = True, limit: int = 100, before: int | None = None
    ) -> list[Message[T]]:
        """Messages ``agent`` received, newest first (without marking them read)."""
        who = await self.services.directory.get(agent)
        where = "m.recipient_id = $1" + ("" if include_read else " AND m.read_at IS NULL")
        return await self._page(where, [who.id], limit, before)

    async def _page(self, where: str, params: list[Any], limit: int, before: int | None) -> list[Message[T]]:
        check_limit(limit)
        if before is not None and (isinstance(before, bool) or not isinstance(before, int)):
            raise InvalidArgument(f"before must be a message seq (int), not {before!r}")
        return await page_messages(self.services, where, params, limit=limit, cursor=before, newest_first=True)

    # ---------------------------------------------------------- dead letters

    async def get_dead_letters(self, agent: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first (of one agent if given)."""
        check_limit(limit)
        params: list[Any] = []
        where = "TRUE"
        if agent is not None:
            who = await self.services.directory.get(agent)
            where, params = "d.agent_id = $1", [who.id]
        rows = await self.services.db.fetch(
            "SELECT d.id, d.message_id, a.external_id AS agent, s.external_id AS sender, d.attempts, d.error, "
            "d.created_at, d.retried_at FROM dead_letters d JOIN agents a ON a.id = d.agent_id "
            "JOIN messages m ON m.id = d.message_id JOIN agents s ON s.id = m.sender_id "
            f"WHERE {where} ORDER BY d.id LIMIT ${len(params) + 1}",
            [*params, limit],
        )
        return [DeadLetter.model_validate(row) for row in rows]

    async def retry_dead_letter(self, dead_letter_id: int) -> None:
        """Put a dead letter's message back in its agent's queue with a fresh attempt count."""
        if isinstance(dead_letter_id, bool) or not isinstance(dead_letter_id, int):
            raise InvalidArgument(f"dead letter id must be an int, not {dead_letter_id!r}")
        row = await self.services.db.fetch_row(
            "WITH d AS (UPDATE dead_letters SET retried_at = now() WHERE id = $1 AND retried_at IS NULL "
            "RETURNING message_id, agent_id) "
            "UPDATE messages m SET dead_at = NULL, attempts = 0 FROM d WHERE m.id = d.message_id "
            "RETURNING m.id, m.recipient_id",
            [dead_letter_id],
        )
        if row is None:
            raise DeadLetterNotFound(dead_letter_id)
        # the catch-up queues it again: it reads the message after its dead-lettering committed
        hosted = self.host_runtime.by_id.get(uuid.UUID(str(row["recipient_id"])))
        if hosted is not None:
            self.host_runtime.poke([hosted])

    async def agent_registered(self, agent: AgentModel) -> None:
        """Called by the runtime after ``register_agent``: start a hosted agent that waited for it."""
        await self.host_runtime.registered(agent)
