"""One-way messages (notes and fan-out), message queries and dead letters: ``am.one_way``.

``send`` validates everything first, writes one row per recipient in one
commit (all or none), returns after the commit, then hands each message to
the recipient's agent actor if it is hosted here (others learn of it through
NOTIFY or the sweep; a recipient hosted nowhere keeps it unread).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from .._tracing import inject, span
from .._validation import check_cursor, check_ids, check_limit, check_message_metadata
from ..errors import DeadLetterNotFound
from ..models import DeadLetter, Message, MessageKind
from ..persistence._rows import as_uuid
from ..persistence.store import messages as store
from .envelope import Envelope, insert_write, new_envelope, read_page, send_attributes, send_span_name
from .hosting import AgentHost
from .services import Services

__all__ = ["OneWay"]

T = TypeVar("T")


class OneWay(Generic[T]):
    """One-way messaging and message queries. Reached as ``am.one_way``."""

    def __init__(self, services: Services[T], host: AgentHost[T]) -> None:
        self.services = services
        self.host = host

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
        :raises InvalidMessage: the payload is not a valid ``T``, holds what PostgreSQL cannot store (NUL,
            lone surrogates, NaN...: the error names the path; see ``docs/limits.md``), or is larger than
            ``Config.max_message_bytes``.
        :raises InvalidArgument: malformed ids or metadata (at most 64 KiB of JSON).
        """
        names = check_ids(recipients)
        meta = check_message_metadata(metadata)
        agent = await self.services.directory.get(sender, "sender")
        targets = await self.services.directory.get_many(names)
        self.services.directory.same_organization(agent, targets)
        value, text = self.services.codec.prepare(message)
        envs = [new_envelope(MessageKind.ONE_WAY, agent, target, value, text, metadata=meta) for target in targets]
        if self.services.tracing:
            with span(send_span_name("send", envs), "producer", send_attributes("send", envs)):
                trace = inject()
                for env in envs:
                    env.trace = trace
                return await self._send(envs)
        return await self._send(envs)

    async def _send(self, envs: list[Envelope[T]]) -> list[uuid.UUID]:
        """Commit ``envs`` in one unit, then hand them to the recipients hosted here."""
        keys = [str(env.recipient_id) for env in envs]
        try:
            await self.services.writer.write([insert_write(env) for env in envs], notify=keys)
        except Exception as exc:  # deregistered meanwhile (the database refuses it whatever our cache says)
            self.services.directory.refused(exc, {env.recipient_id: env.recipient for env in envs})
            raise
        await self.host.committed(envs)
        return [env.id for env in envs]

    # --------------------------------------------------------------- queries

    async def get_sent_messages(self, agent: str, *, limit: int = 100, before: int | None = None) -> list[Message[T]]:
        """Messages ``agent`` sent, newest first; page with ``before`` = the last ``seq`` seen."""
        who = await self.services.directory.get(agent)
        return await self._page(limit, before, sender_id=who.id)

    async def get_received_messages(
        self, agent: str, *, include_read: bool = True, limit: int = 100, before: int | None = None
    ) -> list[Message[T]]:
        """Messages ``agent`` received, newest first (without marking them read)."""
        who = await self.services.directory.get(agent)
        return await self._page(limit, before, recipient_id=who.id, unread_only=not include_read)

    async def _page(self, limit: int, before: int | None, **where: Any) -> list[Message[T]]:
        check_limit(limit)
        cursor = None if before is None else check_cursor(before, "before")
        codec, db = self.services.codec, self.services.db
        return await read_page(codec, db, **where, limit=limit, cursor=cursor, newest_first=True)

    # ---------------------------------------------------------- dead letters

    async def get_dead_letters(self, agent: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first (of one agent if given), retried ones included."""
        check_limit(limit)
        who = None if agent is None else (await self.services.directory.get(agent)).id
        rows = await store.dead_letters(self.services.db, who, include_retried=True, limit=limit)
        return [DeadLetter.model_validate(row) for row in rows]

    async def retry_dead_letter(self, dead_letter_id: int) -> None:
        """Put a dead letter's message back in its agent's queue with a fresh attempt count.

        Its agent's host (in any process) picks it up at once.
        """
        check_cursor(dead_letter_id, "dead_letter_id", minimum=1)
        row = await store.retry_dead_letter(self.services.db, dead_letter_id, self.services.runtime_id)
        if row is None:
            raise DeadLetterNotFound(dead_letter_id)
        # the catch-up queues it again: it reads the message after its dead-lettering committed
        hosted = self.host.by_id.get(as_uuid(row["recipient_id"]))
        if hosted is not None:
            self.host.poke([hosted])
