"""Talk without waiting: the unread queue, waiting for a message, history queries, resuming a handler.

Claims are one statement each (``UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED)``), so
concurrent readers of one agent never get the same message. A claim runs shielded from cancellation:
once the database marked messages read, the caller gets them. A claimed message the runtime cannot
decode is given up again: dead-lettered with the reason, left unread, and the claim goes on to the
messages behind it.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from enum import Enum
from typing import Any, Generic, TypeVar

import anyio

from ..._log import get_logger
from ..._validation import check_cursor, check_id, check_limit, check_timeout, check_uuid
from ...errors import ActorStopped, InvalidOperation, WaitTimeout
from ...models import AgentInfo, Message
from ...persistence.store import messages as store
from ..envelope import Envelope, dead_letter_undecodable, decode_rows, read_page
from ..hosting import AgentHost
from ..services import Services

__all__ = ["DEFAULT", "ChatQueries", "Timeout"]

T = TypeVar("T")
log = get_logger("agent_messaging.conversation")


class _Default(Enum):
    DEFAULT = "default"


#: "Use ``Config.default_reply_timeout``" (the default of the ``timeout`` arguments).
DEFAULT = _Default.DEFAULT
Timeout = float | None | _Default


def _check_after_seq(value: object) -> int | None:
    return None if value is None else check_cursor(value, "after_seq")


class ChatQueries(Generic[T]):
    """The read side of conversations (mixed into ``Conversations``)."""

    services: Services[T]
    host: AgentHost[T]

    def _timeout(self, value: Timeout) -> float | None:
        if value is DEFAULT:
            return self.services.config.default_reply_timeout
        return check_timeout(value)

    async def get_unread_messages(
        self, agent: str, *, from_agent: str | None = None, limit: int = 100
    ) -> list[Message[T]]:
        """Claim up to ``limit`` unread messages of ``agent`` (oldest first), marking them read atomically.

        Concurrent readers of one agent never get the same message.
        """
        check_limit(limit)
        who = await self.services.directory.get(agent)
        other = None if from_agent is None else await self.services.directory.get(from_agent, "from_agent")
        return await self._claim(who, other, limit)

    async def _claim(self, who: AgentInfo, other: AgentInfo | None, limit: int) -> list[Message[T]]:
        found: list[Envelope[T]] = []
        with anyio.CancelScope(shield=True):  # a committed claim must reach the caller
            while len(found) < limit:
                wanted = limit - len(found)
                rows = await store.claim_unread(self.services.db, who.id, None if other is None else other.id, wanted)
                envelopes, bad = decode_rows(self.services.codec, rows)
                found.extend(envelopes)
                if not bad:
                    break
                await dead_letter_undecodable(self.services.writer, bad)
        return [env.to_message() for env in found]

    async def wait_for_message(
        self,
        agent: str,
        *,
        from_agent: str | None = None,
        timeout: Timeout = DEFAULT,  # noqa: ASYNC109 - the API takes a timeout
    ) -> Message[T]:
        """Claim the oldest unread message of ``agent`` (from ``from_agent`` if given), waiting for one to arrive.

        Wakes on a local signal, on NOTIFY from other processes, and at worst after ``Config.poll_interval``.

        :raises WaitTimeout: nothing arrived within ``timeout`` (default ``Config.default_reply_timeout``).
        """
        limit = self._timeout(timeout)
        who = await self.services.directory.get(agent)
        other = None if from_agent is None else await self.services.directory.get(from_agent, "from_agent")
        key = str(who.id)
        with anyio.move_on_after(math.inf if limit is None else limit):
            while True:
                event = self.services.signals.event(key)
                found = await self._claim(who, other, 1)
                if found:
                    return found[0]
                await event.wait()
        assert limit is not None
        raise WaitTimeout(who.external_id, from_agent, limit)

    async def get_messages_from_agent(
        self, agent: str, other: str, *, include_read: bool = True, limit: int = 100, after_seq: int | None = None
    ) -> list[Message[T]]:
        """Messages ``other`` sent to ``agent``, oldest first, without marking them read; page with ``after_seq``."""
        check_limit(limit)
        after = _check_after_seq(after_seq)
        who = await self.services.directory.get(agent)
        sender = await self.services.directory.get(other, "other")
        return await self._page(limit, after, recipient_id=who.id, sender_id=sender.id, unread_only=not include_read)

    async def get_conversation_history(
        self, agent_a: str, agent_b: str, *, after_seq: int | None = None, limit: int = 100
    ) -> list[Message[T]]:
        """Every conversation message between the two agents, all sessions, oldest first; page with ``after_seq``."""
        check_limit(limit)
        after = _check_after_seq(after_seq)
        a = await self.services.directory.get(agent_a, "agent_a")
        b = await self.services.directory.get(agent_b, "agent_b")
        return await self._page(limit, after, between=(a.id, b.id))

    async def get_recent_messages(
        self, agent_a: str, agent_b: str, *, before: uuid.UUID | str | None = None, limit: int = 20
    ) -> list[Message[T]]:
        """The last ``limit`` messages between two agents, **newest first**: both directions, every kind.

        Notes, chat lines, calls, replies and ends alike (``get_conversation_history`` has the conversation
        messages only, oldest first): what the two said to each other lately, say as a model's context.
        ``before`` (a message id, such as a handler's ``ctx.message_id``) keeps the messages older than that
        one; page back with the id of the last message returned. A ``before`` that is no message's id gives
        no messages. Nothing is marked read.
        """
        check_limit(limit)
        cursor = None if before is None else check_uuid(before, "before")
        a = await self.services.directory.get(agent_a, "agent_a")
        b = await self.services.directory.get(agent_b, "agent_b")
        codec, db = self.services.codec, self.services.db
        pair = (a.id, b.id)
        return await read_page(codec, db, pair=pair, limit=limit, cursor=None, cursor_id=cursor, newest_first=True)

    async def _page(self, limit: int, after: int | None, **where: Any) -> list[Message[T]]:
        codec, db = self.services.codec, self.services.db
        return await read_page(codec, db, **where, limit=limit, cursor=after, newest_first=False)

    async def resume_agent_handler(self, agent: str) -> int:
        """Run ``agent``'s handler (hosted here) over everything unread for it, in order; returns how many it ran.

        Waits until each has been handled. Messages the agent host has already queued (it catches up by itself
        at start, on NOTIFY and on every sweep) are left to it and not counted.

        :raises InvalidOperation: ``agent`` has no handler running in this runtime.
        """
        name = check_id(agent, "agent")
        hosted = self.host.hosted.get(name)
        if hosted is None or hosted.ref is None or hosted.failed:
            raise InvalidOperation(
                f"agent {name!r} has no running handler in this runtime: host it here first "
                "(register_handler or host), or call this in the process that hosts it"
            )
        count = 0
        async with contextlib.aclosing(self.host.unread(hosted)) as envelopes:
            async for env in envelopes:
                count += 1
                try:
                    await hosted.ref.ask(env)
                except ActorStopped:
                    hosted.known.pop(env.id, None)
                    raise
                except Exception as exc:  # the host retries it (attempts, then dead letter)
                    log.warning(
                        "conversation.resume_handler_failed", agent=name, message_id=str(env.id), error=repr(exc)
                    )
        return count
