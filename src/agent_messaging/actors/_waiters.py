"""In-memory reply slots of ``send_and_wait`` callers, and the watch that finds replies written elsewhere.

A waiting caller holds no database connection: it waits on its :class:`Waiter`
(an event keyed by its request id). Whoever records a reply in this process
first *claims* the waiter, commits the reply (already marked read, since the
caller consumes it), then completes it. A caller whose deadline passes or who
is cancelled while a claim is in flight waits (shielded, bounded by the
writer's timeout) for the claim to settle, so a committed reply is never lost.

Replies written by another process reach nobody in memory: for every sender
with waiting callers a *watch* task waits on the sender's signal key (fired by
NOTIFY from other processes, by local unconsumed replies, and by the periodic
sweep) and then looks in the database for replies to, and ends of the
conversations of, that sender's pending requests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import structlog
from anyio.abc import TaskGroup

from ..errors import ConversationEnded
from ..persistence.writer import Write
from ..runtime._services import Services, remote_key

__all__ = ["Waiter", "Waiters"]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.conversation")

_CHECK_SQL = """
SELECT m.in_reply_to AS request_id, m.id AS message_id, m.payload, m.read_at IS NULL AS unread, 'reply' AS what
  FROM messages m WHERE m.in_reply_to = ANY($1::uuid[]) AND m.kind = 'reply'
UNION ALL
SELECT q.id, c.id, (SELECT e.payload FROM messages e WHERE e.conversation_id = c.id AND e.kind = 'end'
                    ORDER BY e.seq DESC LIMIT 1), false, 'end'
  FROM messages q JOIN conversations c ON c.id = q.conversation_id
 WHERE q.id = ANY($1::uuid[]) AND c.status = 'ended' AND c.ended_at > q.created_at
"""


@dataclass(eq=False)
class Waiter(Generic[T]):
    """The reply slot of one ``send_and_wait`` call."""

    request_id: uuid.UUID
    sender: str
    recipient: str
    sender_id: uuid.UUID
    conversation_id: uuid.UUID
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: T | None = None
    reply_id: uuid.UUID | None = None
    error: BaseException | None = None
    claim: anyio.Event | None = None
    closing: bool = False

    def try_claim(self) -> bool:
        """Reserve this waiter for a reply about to be committed; False if it is done, leaving or claimed."""
        if self.done.is_set() or self.closing or self.claim is not None:
            return False
        self.claim = anyio.Event()
        return True

    def release(self) -> None:
        """The claimed reply was not committed: let the caller go on waiting (or leave)."""
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.set()

    def complete(self, reply: T, reply_id: uuid.UUID) -> None:
        """Hand the committed reply to the caller (the waiter must be claimed)."""
        self.reply, self.reply_id = reply, reply_id
        self.done.set()
        if self.claim is not None:
            self.claim.set()

    def fail(self, error: BaseException) -> bool:
        """Wake the caller with ``error`` unless a reply is already on its way."""
        if self.done.is_set() or self.closing or self.claim is not None:
            return False
        self.error = error
        self.done.set()
        return True


@dataclass
class _Watch:
    ids: set[uuid.UUID] = field(default_factory=set)


class Waiters(Generic[T]):
    """Pending ``send_and_wait`` calls of this process, by request id, plus one watch per waiting sender."""

    def __init__(self, services: Services[T]) -> None:
        self.services = services
        self.by_id: dict[uuid.UUID, Waiter[T]] = {}
        self._watches: dict[uuid.UUID, _Watch] = {}
        self.tg: TaskGroup | None = None

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, waiter: Waiter[T]) -> None:
        """Register ``waiter`` (before its request is committed, so no reply can miss it)."""
        self.by_id[waiter.request_id] = waiter
        watch = self._watches.get(waiter.sender_id)
        if watch is None:
            watch = self._watches[waiter.sender_id] = _Watch()
            # take the event now: a wake-up between here and the task's first await is not lost
            event = self.services.signals.event(remote_key(waiter.sender_id))
            if self.tg is None:
                raise RuntimeError("the conversation actor is not running")
            self.tg.start_soon(self._watch, waiter.sender_id, watch, event)
        watch.ids.add(waiter.request_id)

    def remove(self, waiter: Waiter[T]) -> None:
        """Forget ``waiter``. An idle watch ends by itself at its next wake-up (at worst the sweep),
        so a sender making calls one after another keeps one watch instead of one per call."""
        self.by_id.pop(waiter.request_id, None)
        watch = self._watches.get(waiter.sender_id)
        if watch is not None:
            watch.ids.discard(waiter.request_id)

    def on_conversation(self, conversation_id: uuid.UUID) -> list[Waiter[T]]:
        """The waiters whose request belongs to this conversation."""
        return [w for w in self.by_id.values() if w.conversation_id == conversation_id]

    async def _watch(self, sender_id: uuid.UUID, watch: _Watch, event: anyio.Event) -> None:
        """Re-check the database for replies written by other processes (woken by NOTIFY or the sweep).

        Replies made in this process complete their waiter in memory and do not wake this.
        """
        key = remote_key(sender_id)
        while watch.ids:
            await event.wait()
            event = self.services.signals.event(key)
            if watch.ids:
                try:
                    await self.check(list(watch.ids))
                except Exception as exc:  # the next wake-up (at worst the sweep) tries again
                    log.warning("conversation.check_failed", sender_id=key, error=repr(exc))
        if self._watches.get(sender_id) is watch:
            del self._watches[sender_id]

    async def check(self, request_ids: list[uuid.UUID]) -> None:
        """Complete waiters whose reply (or conversation end) is in the database."""
        rows = await self.services.db.fetch(_CHECK_SQL, [request_ids])
        claimed: list[tuple[Waiter[T], Any, uuid.UUID]] = []
        reads: list[Write] = []
        for row in sorted(rows, key=lambda r: r["what"] != "reply"):  # a reply wins over an end
            waiter = self.by_id.get(uuid.UUID(str(row["request_id"])))
            if waiter is None:
                continue
            payload = None if row["payload"] is None else self.services.codec.decode(row["payload"])
            if row["what"] == "end":
                cid = uuid.UUID(str(row["message_id"]))
                waiter.fail(ConversationEnded(waiter.sender, waiter.recipient, cid, payload))
            elif waiter.try_claim():
                reply_id = uuid.UUID(str(row["message_id"]))
                claimed.append((waiter, payload, reply_id))
                if row["unread"]:
                    reads.append(Write("message.read", (reply_id,)))
        if not claimed:
            return
        try:
            if reads:
                await self.services.writer.write(reads)
        except BaseException:
            for waiter, _payload, _rid in claimed:
                waiter.release()
            raise
        for waiter, payload, reply_id in claimed:
            waiter.complete(payload, reply_id)
