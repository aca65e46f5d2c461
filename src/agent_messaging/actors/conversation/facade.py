"""Conversations between two agents: calls (talk and wait) and chats (talk without waiting): ``am.conversation``.

Every message between a pair belongs to the pair's current *session* (a row of
``conversations``; at most one active per pair). The session is resolved by the
database in the same statement that writes the message (see the writer's
``conversation.message``), so two processes opening a pair at once agree.

``send_and_wait`` commits the request with its absolute reply deadline, then
waits on an in-memory slot (no pool connection held; see :mod:`..calls`).
Replies are matched by request id: a hosted handler's non-None return value
(recorded by its agent actor) or :meth:`Conversations.reply` from anywhere. A
reply written by another process is found by the sender's watch (NOTIFY, then
the periodic sweep as a fallback). A caller that timed out or was cancelled
leaves the request open: its late reply becomes an unread message for the
sender.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio

from ..._log import get_logger
from ..._tracing import SYSTEM, annotate, inject, span
from ..._validation import check_id, check_message_metadata, check_uuid
from ...errors import ConversationEnded, DeadlockDetected, InvalidOperation, PersistenceUnavailable
from ...models import AgentInfo, MessageKind
from ...persistence._rows import as_uuid, optional_uuid
from ...persistence.store import conversations as store, waits
from ...persistence.writer import Write
from ..agent_actor import CURRENT_AGENT
from ..calls import Calls, Waiter
from ..envelope import Envelope, insert_row, insert_write, new_envelope, send_attributes, send_span_name
from ..hosting import AgentHost
from ..services import Services
from .chat import DEFAULT, ChatQueries, Timeout

__all__ = ["DEFAULT", "Conversations"]

T = TypeVar("T")
log = get_logger("agent_messaging.conversation")


def _pair_key(a: AgentInfo, b: AgentInfo) -> tuple[uuid.UUID, uuid.UUID]:
    # Python orders UUIDs by their 128-bit value, as PostgreSQL orders uuid bytewise
    return (a.id, b.id) if a.id < b.id else (b.id, a.id)


class Conversations(ChatQueries[T]):
    """Calls and chats between two agents. Reached as ``am.conversation``."""

    def __init__(self, services: Services[T], host: AgentHost[T], calls: Calls[T]) -> None:
        self.services = services
        self.host = host
        self.calls = calls
        self._sessions: dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID] = {}
        self._opened: set[uuid.UUID] = set()

    # ------------------------------------------------------------ talk and wait

    async def send_and_wait(
        self,
        sender: str,
        recipient: str,
        message: T,
        *,
        timeout: Timeout = DEFAULT,  # noqa: ASYNC109 - the API takes a timeout
    ) -> T:
        """Send a request from ``sender`` to ``recipient`` and wait for its reply; returns the reply.

        ``timeout`` defaults to ``Config.default_reply_timeout``; None waits until the caller's own
        cancel scope ends. The request is committed (with its absolute reply deadline) before waiting;
        the wait holds no database connection.

        :raises ReplyTimeout: no reply in time (a later reply lands in ``sender``'s unread messages).
        :raises ConversationEnded: the conversation was ended while waiting.
        :raises DeadlockDetected: a handler's call would close a cycle of agents waiting on each other.
        :raises InvalidOperation: ``sender`` is ``recipient``.
        :raises AgentNotFound, CrossOrganization, InvalidMessage, InvalidArgument: bad input (nothing written;
            the rules are in ``docs/limits.md``; ``timeout`` is at most 30 days).
        """
        limit = self._timeout(timeout)
        a, b = await self._agents(sender, recipient)
        value, text = self.services.codec.prepare(message)
        deadline = None if limit is None else datetime.now(UTC) + timedelta(seconds=limit)
        cid, extra = self._session(a, b)
        env = new_envelope(MessageKind.REQUEST, a, b, value, text, conversation_id=cid, reply_deadline=deadline)
        if self.services.tracing:
            with span(f"call {b.external_id}", "client", _call_attributes(env, limit)):
                return await self._call(env, a, b, extra, limit)
        return await self._call(env, a, b, extra, limit)

    async def _call(self, env: Envelope[T], a: AgentInfo, b: AgentInfo, extra: list[Write], limit: float | None) -> T:
        """Commit the request and wait for its reply (the round trip of :meth:`send_and_wait`)."""
        cid = env.conversation_id
        assert cid is not None
        caller = CURRENT_AGENT.get()
        try:
            if caller is not None:  # DeadlockDetected before anything is written
                await self._wait_for(caller, b, env.id)  # (a cancellation after its commit: removed below)
            waiter: Waiter[T] = Waiter(env.id, a.external_id, b.external_id, a.id, cid)
            self.calls.add(waiter)
            try:
                await self._commit(env, a, b, extra)
                waiter.conversation_id = env.conversation_id or cid
                reply = await self.calls.wait(waiter, limit)
                if self.services.tracing and waiter.reply_id is not None:
                    annotate({"agent_messaging.reply.id": str(waiter.reply_id)})
                return reply
            finally:
                self.calls.remove(waiter)
        finally:
            if caller is not None:
                with anyio.CancelScope(shield=True):
                    try:
                        await waits.remove_wait(self.services.db, env.id)
                    except Exception as exc:  # the database is away: the edge goes when the runtime restores
                        log.warning("conversation.wait_not_removed", request_id=str(env.id), error=repr(exc))

    async def _wait_for(self, caller: str, target: AgentInfo, request_id: uuid.UUID) -> None:
        """Record that ``caller``'s handler now waits for ``target`` in the shared wait-for graph.

        ``DeadlockDetected`` (nothing recorded) if the edge closes a cycle through agents hosted in any
        process. Only calls made inside handlers pay for this.
        """
        directory = self.services.directory
        me = await directory.get(caller)
        path = await waits.add_wait(
            self.services.db, request_id, me.organization_id, me.id, target.id, self.services.presence.key
        )
        if path is not None:
            names = [(await directory.by_id(node)).external_id for node in path]
            raise DeadlockDetected([caller, *names])

    async def reply(
        self, responder: str, waiting_agent: str, message: T, *, request_id: uuid.UUID | str | None = None
    ) -> uuid.UUID:
        """Answer a request of ``waiting_agent`` to ``responder``; returns the reply's message id.

        Without ``request_id`` it answers the oldest open request from ``waiting_agent`` in the pair's active
        conversation (whether or not its caller still waits: a caller that timed out finds the reply in its
        unread messages). The request is claimed in the database, so across any number of processes a
        request gets exactly one reply.
        ``request_id`` is a ``UUID`` or a str that spells one.

        :raises InvalidOperation: nothing to answer; the request is already answered (another reply won), is
            not theirs, or its conversation ended.
        """
        r, w = await self._agents(responder, waiting_agent, ("responder", "waiting_agent"))
        value, text = self.services.codec.prepare(message, "reply")
        if request_id is not None:
            rid = check_uuid(request_id, "request_id")
            row = await store.request(self.services.db, rid)
            if (
                row is None
                or row["kind"] != MessageKind.REQUEST.value
                or as_uuid(row["sender_id"]) != w.id
                or as_uuid(row["recipient_id"]) != r.id
            ):
                raise InvalidOperation(f"message {rid} is not a request from {waiting_agent!r} to {responder!r}")
            if row["ended"]:  # closed with it, or committed at the instant it ended
                raise InvalidOperation(f"request {rid} cannot be answered: its conversation ended")
            reply_id = None
            if row["replied_at"] is None:
                reply_id = await self._record_reply(r, w, rid, optional_uuid(row["conversation_id"]), value, text)
            if reply_id is None:
                raise InvalidOperation(f"request {rid} is already answered")
            return reply_id
        row = await store.oldest_open_request(self.services.db, r.id, w.id, [])
        if row is None:
            raise InvalidOperation(f"{waiting_agent!r} has no unanswered request to {responder!r}")
        rid = as_uuid(row["id"])
        reply_id = await self._record_reply(r, w, rid, optional_uuid(row["conversation_id"]), value, text)
        if reply_id is None:  # another process's reply claimed it between the read and the claim
            raise InvalidOperation(f"request {rid} is already answered (another reply won it)")
        return reply_id

    async def _record_reply(
        self,
        responder: AgentInfo,
        waiting: AgentInfo,
        request_id: uuid.UUID,
        cid: uuid.UUID | None,
        value: T,
        text: str,
    ) -> uuid.UUID | None:
        """Commit a reply; its id if it won the request, None if another reply had."""
        env, consumed, won = await self.calls.record_reply(responder, waiting, request_id, cid, value, text)
        if won and not consumed:
            await self.host.committed([env])
        return env.id if won else None

    async def end_conversation(self, agent_a: str, agent_b: str, *, message: T | None = None) -> None:
        """End the pair's current session (``agent_a`` ends it); waiters on it get ``ConversationEnded``.

        ``message``, if given, is stored as the session's ending message (sent to ``agent_b``) and carried
        by the ``ConversationEnded`` errors. The next message between the pair starts a new session.

        :raises InvalidOperation: the pair has no active conversation (or ``agent_a`` is ``agent_b``).
        """
        a, b = await self._agents(agent_a, agent_b, ("agent_a", "agent_b"))
        prepared = None if message is None else self.services.codec.prepare(message, "ending message")
        pair = _pair_key(a, b)
        cid = await store.active_conversation(self.services.db, pair)
        if cid is None:
            raise InvalidOperation(f"there is no active conversation between {agent_a!r} and {agent_b!r}")
        writes = [Write(store.END, (cid, a.id)), Write(store.CLOSE_REQUESTS, (cid,))]
        env: Envelope[T] | None = None
        if prepared is not None:
            env = new_envelope(MessageKind.END, a, b, prepared[0], prepared[1], conversation_id=cid)
            writes.append(insert_write(env))
        keys = [str(a.id), str(b.id)]
        try:
            await self.services.writer.write(writes, notify=keys)
        except Exception as exc:
            self.services.directory.refused(exc, {b.id: b.external_id})
            raise
        self._sessions.pop(pair, None)
        self._opened.discard(cid)
        ending = None if prepared is None else prepared[0]
        for waiter in self.calls.on_conversation(cid):
            waiter.fail(ConversationEnded(waiter.sender, waiter.recipient, cid, ending))
        self.services.signals.fire(keys)  # waiters whose session id this process did not know check the database
        log.info("conversation.ended", conversation_id=str(cid), agent=a.external_id, other=b.external_id)
        if env is not None:
            await self.host.deliver([env])

    # ------------------------------------------------------- talk without waiting

    async def send(
        self, sender: str, recipient: str, message: T, *, metadata: dict[str, Any] | None = None
    ) -> uuid.UUID:
        """Send a chat message (part of the pair's conversation) without waiting; returns its id once committed.

        The recipient's handler runs it if the recipient is hosted; otherwise it waits in its unread messages.
        """
        a, b = await self._agents(sender, recipient)
        meta = check_message_metadata(metadata)
        value, text = self.services.codec.prepare(message)
        cid, extra = self._session(a, b)
        env = new_envelope(MessageKind.CHAT, a, b, value, text, metadata=meta, conversation_id=cid)
        await self._commit(env, a, b, extra)
        return env.id

    # ----------------------------------------------------------------- helpers

    async def _agents(
        self, first: str, second: str, what: tuple[str, str] = ("sender", "recipient")
    ) -> tuple[AgentInfo, AgentInfo]:
        x = check_id(first, what[0])
        y = check_id(second, what[1])
        if x == y:
            raise InvalidOperation(f"agent {x!r} cannot hold a conversation with itself")
        a = await self.services.directory.get(x, what[0])
        b = await self.services.directory.get(y, what[1])
        self.services.directory.same_organization(a, [b])
        return a, b

    def _session(self, a: AgentInfo, b: AgentInfo) -> tuple[uuid.UUID, list[Write]]:
        """The pair's session id as this process knows it, and the row that opens it if not yet committed."""
        pair = _pair_key(a, b)
        cid = self._sessions.get(pair)
        if cid is None:
            cid = self._sessions[pair] = uuid.uuid4()
        if cid in self._opened:
            return cid, []
        return cid, [Write(store.OPEN, (cid, a.organization_id, pair[0], pair[1]))]

    @staticmethod
    def _message_write(env: Envelope[T]) -> Write:
        return Write(store.MESSAGE, (*insert_row(env), False))

    async def _commit(self, env: Envelope[T], a: AgentInfo, b: AgentInfo, extra: list[Write]) -> None:
        """Commit a request or chat line with its session, wake local readers, deliver to a hosted recipient."""
        if self.services.tracing:
            with span(send_span_name("send", [env]), "producer", send_attributes("send", [env])):
                env.trace = inject()
                await self._write(env, a, b, extra)
            return
        await self._write(env, a, b, extra)

    async def _write(self, env: Envelope[T], a: AgentInfo, b: AgentInfo, extra: list[Write]) -> None:
        key = str(env.recipient_id)
        try:
            await self.services.writer.write([*extra, self._message_write(env)], notify=[key])
        except PersistenceUnavailable:
            raise
        except Exception as exc:
            self.services.directory.refused(exc, {b.id: b.external_id})  # deregistered by another runtime meanwhile
            if not extra and store.ended_conversation(exc) is None:
                raise
            # another process opened this pair's session at the same moment, or ended the one this process
            # knew: adopt the pair's active session (or open one) and write again
            log.info("conversation.session_race", error=repr(exc))
            pair = _pair_key(a, b)
            active = await store.active_conversation(self.services.db, pair)
            self._sessions.pop(pair, None)
            if active is not None:
                self._sessions[pair] = active
                self._opened.add(active)
            env.conversation_id, extra = self._session(a, b)
            await self.services.writer.write([*extra, self._message_write(env)], notify=[key])
        if env.conversation_id is not None:
            self._opened.add(env.conversation_id)
        await self.host.committed([env])


def _call_attributes(request: Envelope[Any], timeout: float | None) -> dict[str, Any]:
    """The attributes of a call's span (the caller's round trip)."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "call",
        "messaging.destination.name": request.recipient,
        "messaging.message.id": str(request.id),
        "agent_messaging.sender": request.sender,
    }
    if request.conversation_id is not None:
        attributes["messaging.message.conversation_id"] = str(request.conversation_id)
    if timeout is not None:
        attributes["agent_messaging.call.timeout"] = timeout
    return attributes
