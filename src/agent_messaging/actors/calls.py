"""The reply side of calls: in-memory reply slots of waiting callers, recording replies, finding remote ones.

Shared by the conversation facade (``send_and_wait``, ``reply``) and the agent
actors (a hosted handler's return value answers a call), so neither reaches
into the other.

A waiting caller holds no database connection: it waits on its :class:`Waiter`
(a kernel :class:`~agent_messaging.runtime._slot.Slot` keyed by its request
id). Whoever records a reply in this process first *claims* the waiter,
commits the reply (already marked read, since the caller consumes it), then
completes it. A caller whose deadline passes or who is cancelled while a claim
is in flight waits (shielded, bounded by the writer's timeout) for the claim
to settle, so a committed reply is never lost. The deadlines of all waiting
callers are kept by one task (:class:`_Deadlines`), which wakes a caller whose
deadline passed: a call enters no cancel scope of its own.

Replies written by another process reach nobody in memory: for every sender
with waiting callers a *watch* task waits on the sender's ``remote:`` signal
key (fired by NOTIFY from other processes and by the periodic sweep) and then
looks in the database for replies to, and ends of the conversations of, that
sender's pending requests.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._log import get_logger
from .._tracing import annotate, inject, span
from .._validation import storable_text
from ..errors import ConversationEnded, HandlerError, InvalidMessage, LifecycleError, ReplyTimeout
from ..models import AgentInfo, MessageKind
from ..persistence._rows import as_uuid, json_dict
from ..persistence.store import conversations as store, hosts
from ..persistence.writer import Write
from ..runtime._slot import Slot
from .envelope import Envelope, insert_row, new_envelope, send_attributes, send_span_name
from .news import remote_key
from .services import Services

__all__ = ["Calls", "Waiter", "error_reply", "handler_error"]

T = TypeVar("T")
_TAKEN_LIMIT = 10_000
log = get_logger("agent_messaging.conversation")
_EXPIRE_EVERY = 60.0


class Waiter(Slot[T]):
    """The reply slot of one ``send_and_wait`` call; a reply being committed *claims* it first. The
    deadlines task wakes it (:meth:`~agent_messaging.runtime._slot.Slot.wake`) when its deadline passes."""

    __slots__ = (
        "__weakref__",
        "_claim",
        "closing",
        "conversation_id",
        "recipient",
        "reply_id",
        "request_id",
        "sender",
        "sender_id",
    )

    def __init__(
        self, request_id: uuid.UUID, sender: str, recipient: str, sender_id: uuid.UUID, conversation_id: uuid.UUID
    ) -> None:
        super().__init__()
        self.request_id = request_id
        self.sender = sender
        self.recipient = recipient
        self.sender_id = sender_id
        self.conversation_id = conversation_id
        self.reply_id: uuid.UUID | None = None
        self.closing = False
        self._claim: anyio.Event | None = None

    def try_claim(self) -> bool:
        """Reserve this waiter for a reply about to be committed; False if it is done, leaving or claimed."""
        if self.done or self.closing or self._claim is not None:
            return False
        self._claim = anyio.Event()
        return True

    def release(self) -> None:
        """The claimed reply was not committed: let the caller go on waiting (or leave)."""
        claim, self._claim = self._claim, None
        if claim is not None:
            claim.set()

    def complete(self, reply: T, reply_id: uuid.UUID) -> None:
        """Hand the committed reply to the caller (the waiter must be claimed)."""
        self.reply_id = reply_id
        self.resolve(reply)
        if self._claim is not None:
            self._claim.set()

    def complete_error(self, error: BaseException) -> None:
        """Hand the committed error reply (a ``HandlerError``) to the caller (the waiter must be claimed)."""
        super().fail(error)
        if self._claim is not None:
            self._claim.set()

    def fail(self, error: BaseException) -> None:
        """Wake the caller with ``error`` unless a reply is already on its way."""
        if not (self.closing or self._claim is not None):
            super().fail(error)

    async def settle(self) -> None:
        """Stop waiting: if a reply is being committed for us, wait (shielded) until it settles."""
        if not self.done:
            self.closing = True
            claim = self._claim
            if claim is not None:
                with anyio.CancelScope(shield=True):
                    await claim.wait()


class _Deadlines:
    """The deadlines of the waiting callers, kept by one task that wakes (``Slot.wake``) those whose
    deadline passed. A call waits on its waiter alone: a cancel scope with a deadline per call, entered and
    left, was about a third of the calling side's time on trio's event loop (100 concurrent call pairs).

    A heap of weak references: an entry of a caller that left holds nothing of it, and the entries of
    callers that left are dropped when the heap outgrows the callers waiting. When the task stops (the
    runtime closes), it wakes every caller it kept and says it is :attr:`closed`: such a caller then waits
    out its own deadline (see :meth:`Calls.wait`), as a call always did.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, weakref.ref[Waiter[Any]]]] = []
        self._order = itertools.count()
        self._sooner = anyio.Event()
        self.closed = False
        """Whether the task stopped: nobody keeps deadlines any more."""

    def add(self, waiter: Waiter[Any], deadline: float, waiting: int) -> bool:
        """Wake ``waiter`` at ``deadline`` (``anyio.current_time()`` clock); ``waiting``: callers waiting now.
        False if nobody keeps deadlines any more (:attr:`closed`)."""
        if self.closed:
            return False
        heap = self._heap
        if len(heap) > 2 * waiting + 64:
            heap[:] = [entry for entry in heap if _waiting(entry[2]) is not None]
            heapq.heapify(heap)
        if not heap or deadline < heap[0][0]:
            self._sooner.set()
        heapq.heappush(heap, (deadline, next(self._order), weakref.ref(waiter)))
        return True

    async def serve(self) -> None:
        """Wake callers as their deadlines pass, until cancelled; then wake every caller still kept."""
        heap = self._heap
        try:
            while True:
                if heap:
                    with anyio.move_on_after(heap[0][0] - anyio.current_time()):
                        await self._sooner.wait()
                else:
                    await self._sooner.wait()
                if self._sooner.is_set():
                    self._sooner = anyio.Event()
                now = anyio.current_time()
                while heap and heap[0][0] <= now:
                    waiter = _waiting(heapq.heappop(heap)[2])
                    if waiter is not None:
                        waiter.wake()
        finally:
            self.closed = True
            for entry in heap:
                waiter = _waiting(entry[2])
                if waiter is not None:
                    waiter.wake()
            heap.clear()


def _waiting(ref: weakref.ref[Waiter[Any]]) -> Waiter[Any] | None:
    """The waiter behind ``ref`` if its caller still waits."""
    waiter = ref()
    return None if waiter is None or waiter.done or waiter.closing else waiter


@dataclass
class _Watch:
    ids: set[uuid.UUID] = field(default_factory=set)


class Calls(Generic[T]):
    """Pending calls of this runtime and the recording of replies. One per runtime; run it in the root."""

    def __init__(self, services: Services[T]) -> None:
        self.services = services
        self.by_id: dict[uuid.UUID, Waiter[T]] = {}
        self._taken: OrderedDict[uuid.UUID, None] = OrderedDict()  # replies from elsewhere a call here consumed
        self._watches: dict[uuid.UUID, _Watch] = {}
        self._deadlines = _Deadlines()
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Expire requests whose deadline passed while nobody ran, then serve (watches, the callers' deadlines)
        until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._deadlines.serve)
                expired = await store.expire_requests(self.services.db)
                if expired:
                    log.info("conversation.requests_expired", count=expired)
                task_status.started()
                while True:
                    await anyio.sleep(max(_EXPIRE_EVERY, self.services.config.poll_interval))
                    try:
                        await store.expire_requests(self.services.db)
                    except Exception as exc:  # retried next period
                        log.warning("conversation.expire_failed", error=repr(exc))
        finally:
            self._tg = None

    # ------------------------------------------------------------------ waiting side

    def add(self, waiter: Waiter[T]) -> None:
        """Register ``waiter`` (before its request is committed, so no reply can miss it)."""
        if self._tg is None:
            raise LifecycleError("calls are not being served (is the runtime open?)")
        self.by_id[waiter.request_id] = waiter
        watch = self._watches.get(waiter.sender_id)
        if watch is None:
            watch = self._watches[waiter.sender_id] = _Watch()
            # take the event now: a wake-up between here and the task's first await is not lost
            event = self.services.signals.event(remote_key(waiter.sender_id))
            self._tg.start_soon(self._watch, waiter.sender_id, watch, event)
        watch.ids.add(waiter.request_id)

    def remove(self, waiter: Waiter[T]) -> None:
        """Forget ``waiter``. An idle watch ends by itself at its next wake-up (at worst the sweep),
        so a sender making calls one after another keeps one watch instead of one per call."""
        self.by_id.pop(waiter.request_id, None)
        watch = self._watches.get(waiter.sender_id)
        if watch is not None:
            watch.ids.discard(waiter.request_id)

    def takes(self, reply: Envelope[Any]) -> bool:
        """Whether a call of this runtime reads ``reply`` (it waits for it, or has just consumed it): the
        catch-up of a hosted agent must not hand it to the agent's handler as well."""
        return reply.in_reply_to in self.by_id or reply.id in self._taken

    def on_conversation(self, conversation_id: uuid.UUID) -> list[Waiter[T]]:
        """The waiters whose request belongs to this conversation."""
        return [w for w in self.by_id.values() if w.conversation_id == conversation_id]

    async def wait(self, waiter: Waiter[T], limit: float | None) -> T:
        """Wait for ``waiter``'s reply for at most ``limit`` seconds (None: the caller's cancel scope decides)."""
        cancelled = True
        try:
            if limit is None:
                await waiter.wait_done()
            else:
                deadline = anyio.current_time() + limit
                if self._deadlines.add(waiter, deadline, len(self.by_id)):
                    await waiter.wait_done()  # a reply, an error, or the deadline (woken)
                if not waiter.done and self._deadlines.closed:  # the runtime closed first: nothing can
                    await anyio.sleep_until(deadline)  # answer now; time out at the deadline, as always
            cancelled = False
        finally:
            await waiter.settle()
            if cancelled and waiter.reply_id is not None:
                with anyio.CancelScope(shield=True):
                    await self._unconsume(waiter)
        if waiter.done:
            return waiter.result()
        assert limit is not None
        with anyio.CancelScope(shield=True):
            await self._mark_timed_out(waiter)
        hosted = await self._hosted(waiter)
        if waiter.done:  # a reply from another process, read (and so consumed) while the timeout was recorded
            return waiter.result()
        raise ReplyTimeout(waiter.sender, waiter.recipient, waiter.request_id, limit, hosted=hosted)

    async def _mark_timed_out(self, waiter: Waiter[T]) -> None:
        """Record that the caller stopped waiting, committed before ``ReplyTimeout`` reaches it: the update
        holds the request's row lock, so a read of the recipient's unread messages right after the timeout
        would otherwise skip the request while it commits. Bounded by ``connect_timeout``; failures logged."""
        try:
            with anyio.fail_after(self.services.config.connect_timeout):
                await self.services.writer.write([Write(store.TIMED_OUT, (waiter.request_id,))])
        except Exception as exc:
            log.warning("conversation.timed_out_mark_failed", request_id=str(waiter.request_id), error=repr(exc))

    async def _hosted(self, waiter: Waiter[T]) -> bool:
        """Whether a live runtime hosts ``waiter``'s recipient (for the timeout's message; True if unknown)."""
        try:
            with anyio.fail_after(self.services.config.connect_timeout):
                agent = await self.services.directory.get(waiter.recipient)
                return await hosts.hosted_live(self.services.db, agent.id)
        except Exception:
            return True

    async def _unconsume(self, waiter: Waiter[T]) -> None:
        """The caller was cancelled after its reply was consumed: put the reply back in its unread messages."""
        assert waiter.reply_id is not None
        key = str(waiter.sender_id)
        try:
            await self.services.writer.write([Write(store.UNREAD, (waiter.reply_id,))], notify=[key])
            self.services.signals.fire([key])
        except Exception as exc:
            log.warning("conversation.unconsume_failed", reply_id=str(waiter.reply_id), error=repr(exc))

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
        """Complete waiters whose reply (or conversation end) is in the database (replies found are marked read)."""
        rows = await store.replies_and_ends(self.services.db, request_ids)
        for row in sorted(rows, key=lambda r: r["what"] != "reply"):  # a reply wins over an end
            waiter = self.by_id.get(as_uuid(row["request_id"]))
            if waiter is None or waiter.done:
                continue
            if row["what"] == "end":
                try:
                    payload = None if row["payload"] is None else self.services.codec.decode(row["payload"])
                except InvalidMessage:  # an ending message stored by another client or version
                    payload = None
                waiter.fail(ConversationEnded(waiter.sender, waiter.recipient, as_uuid(row["message_id"]), payload))
                continue
            error = json_dict(row["metadata"]).get("error")
            if error is not None:
                waiter.complete_error(handler_error(error, waiter.request_id))
                continue
            try:
                reply = self.services.codec.decode(row["payload"], "reply")
            except InvalidMessage as exc:  # stored by another client or version: the caller learns it now
                waiter.fail(exc)
                continue
            reply_id = as_uuid(row["message_id"])
            self._taken[reply_id] = None
            if len(self._taken) > _TAKEN_LIMIT:
                self._taken.popitem(last=False)
            waiter.complete(reply, reply_id)

    # ------------------------------------------------------------------ replying side

    async def record_reply(
        self,
        responder: AgentInfo,
        waiting: AgentInfo,
        request_id: uuid.UUID,
        cid: uuid.UUID | None,
        value: T | None,
        text: str,
        *,
        error: dict[str, Any] | None = None,
    ) -> tuple[Envelope[T], bool, bool]:
        """Claim ``request_id`` in the database and commit a reply to it (or, with ``error``, an error reply).

        Returns the reply, whether a waiting caller here consumed it, and whether it won: across any number
        of processes one reply claims a request, and the others are not written. A reply nobody consumed is
        an unread message of ``waiting``: the caller delivers it to the hosted agents (``AgentHost.committed``).
        """
        waiter = self.by_id.get(request_id)
        consumed = waiter is not None and waiter.try_claim()
        env: Envelope[T] = new_envelope(
            MessageKind.REPLY,
            responder,
            waiting,
            cast(T, value),  # None for an error reply
            text,
            conversation_id=cid,
            in_reply_to=request_id,
            metadata=None if error is None else {"error": error},
        )
        if self.services.tracing:
            with span(send_span_name("reply", [env]), "producer", send_attributes("reply", [env])):
                env.trace = inject()
                consumed, won = await self._commit_reply(env, waiter, consumed, error)
                annotate({"agent_messaging.reply.won": won})
                if error is not None:
                    annotate({"agent_messaging.reply.error": str(error.get("type", ""))})
            return env, consumed, won
        consumed, won = await self._commit_reply(env, waiter, consumed, error)
        return env, consumed, won

    async def _commit_reply(
        self, env: Envelope[T], waiter: Waiter[T] | None, consumed: bool, error: dict[str, Any] | None
    ) -> tuple[bool, bool]:
        """Commit the claim and the reply, then complete or release the waiter; (consumed, won)."""
        request_id = env.in_reply_to
        assert request_id is not None
        try:
            won = await self.services.writer.write(
                [Write(store.CLAIM, (env.id, request_id)), Write(store.REPLY, (*insert_row(env), consumed))],
                notify=() if consumed else [str(env.recipient_id)],
            )
        except BaseException:
            if waiter is not None and consumed:
                waiter.release()
            raise
        if str(env.id) not in won:
            if waiter is not None and consumed:
                waiter.release()
            return False, False
        if waiter is not None and consumed:
            if error is not None:
                waiter.complete_error(handler_error(error, request_id))
            else:
                waiter.complete(env.payload, env.id)
        return consumed, True


def error_reply(agent: str, exc: BaseException, remote_traceback: str) -> dict[str, Any]:
    """What an error reply stores about the exception a handler raised (in the reply's metadata)."""
    return {
        "agent": agent,
        "type": type(exc).__name__,
        "message": storable_text(str(exc)),
        "traceback": storable_text(remote_traceback),
    }


def handler_error(error: dict[str, Any], request_id: uuid.UUID) -> HandlerError:
    """The ``HandlerError`` a caller gets for an error reply."""
    return HandlerError(
        str(error.get("agent", "?")),
        request_id,
        str(error.get("type", "Exception")),
        str(error.get("message", "")),
        str(error.get("traceback", "")),
    )
