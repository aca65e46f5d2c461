"""The agent actor: runs one hosted agent's handler, one message at a time, with retries and dead letters.

A :class:`HostedAgent` is the agent's state that outlives its actor instances
(the message in flight, the ids already queued, the restart count); each
(re)start makes a fresh :class:`AgentActor` and a fresh user ``Agent``.

If the handler returns, the message is marked handled (batched through the
writer; losing that mark only means a redelivery), and a non-None return value
answers a call. If it raises, the attempt is recorded and the actor crashes;
its supervisor restarts it with backoff and the fresh instance retries the same
message first (``on_start``). After ``max_attempts`` a one-way message or chat
line is dead-lettered and the agent moves on.

A failing *call* goes back to its caller: the request is answered, durably,
with an error reply (the caller's ``send_and_wait`` raises ``HandlerError``
with the exception's type, message and traceback) and the agent keeps running.
An ``AgentMessagingError`` raised by the runtime's own checks (a deadlock, an
invalid message...) cannot be fixed by retrying, so it is answered at once;
other exceptions are first retried as for any message.
"""

from __future__ import annotations

import contextvars
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import structlog

from .._log import get_logger
from .._tracing import SYSTEM, extract, fail, span
from .._validation import storable_text
from ..errors import AgentMessagingError, InvalidMessage, PersistenceUnavailable
from ..models import AgentInfo, MessageKind
from ..persistence.store import agents as agent_store, messages as store
from ..persistence.writer import Write
from ..runtime.actor import Actor, ActorRef
from .agent import Agent, MessageContext
from .calls import Calls, error_reply
from .envelope import Envelope
from .registry import HostSpec
from .services import Services

__all__ = ["CURRENT_AGENT", "AgentActor", "Bind", "Delivered", "HostedAgent", "answer", "failure_reply"]

T = TypeVar("T")
log = get_logger("agent_messaging.agent")

#: The agent whose handler is running in this task (None outside handlers). Used for deadlock detection.
CURRENT_AGENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_messaging_agent", default=None)

#: Hands messages committed in this process to the agents hosted here (``AgentHost.committed``).
Delivered = Callable[[list[Envelope[Any]]], Awaitable[None]]
#: Gives a user agent instance its runtime and external id before ``on_start`` (the composition root's).
Bind = Callable[[Agent[Any], str], None]
_KNOWN_LIMIT = 100_000


class HostedAgent(Generic[T]):
    """Bookkeeping of one hosted agent that outlives its actor instances."""

    def __init__(self, spec: HostSpec, agent: AgentInfo, restarts: int = 0) -> None:
        self.spec = spec
        self.agent = agent
        self.ref: ActorRef[Envelope[T]] | None = None
        self.inflight: Envelope[T] | None = None
        self.known: OrderedDict[uuid.UUID, None] = OrderedDict()
        self.dead: dict[uuid.UUID, float] = {}
        self.restarts = restarts
        self.failed = False
        self.fenced = False
        """Set when the runtime fenced itself: the running handler is being cancelled and must leave no trace
        (no failure reply, no attempt, no dead letter: the message is handled again by the next owner)."""
        # True until the first read of its backlog is done: direct deliveries wait for it (order)
        self.catching_up = True
        self.poked = False

    def mark_known(self, message_id: uuid.UUID) -> bool:
        """Remember ``message_id``; False if it was already known (queued once)."""
        if message_id in self.known:
            return False
        self.known[message_id] = None
        if len(self.known) > _KNOWN_LIMIT:
            self.known.popitem(last=False)
        return True


class AgentActor(Actor[Envelope[T]]):
    """One instance of a hosted agent's actor: owns the handling of each message."""

    def __init__(
        self, services: Services[T], calls: Calls[T], hosted: HostedAgent[T], delivered: Delivered, bind: Bind
    ) -> None:
        self.services = services
        self.calls = calls
        self.hosted = hosted
        self.delivered = delivered
        self.agent: Agent[T] = hosted.spec.make()
        bind(self.agent, hosted.spec.agent)

    async def on_start(self) -> None:
        """Start the user's agent, then retry the message its previous instance crashed on."""
        await self.agent.on_start()
        pending = self.hosted.inflight
        if pending is not None:
            await self.on_receive(pending)

    async def on_stop(self) -> None:
        """Stop the user's agent."""
        await self.agent.on_stop()

    async def on_receive(self, message: Envelope[T]) -> Any:
        """Run the handler for one message; raising crashes the actor (the supervisor retries it).

        With tracing on, in a ``process`` span: a child of the span that sent the message (its trace
        context travels inside it), so what the handler does (calls, replies) joins the sender's trace.
        """
        if self.services.tracing:
            attributes = _process_attributes(self.hosted.spec.agent, message)
            with span(f"process {self.hosted.spec.agent}", "consumer", attributes, parent=extract(message.trace)):
                return await self._handle(message)
        return await self._handle(message)

    async def _handle(self, message: Envelope[T]) -> Any:
        hosted, env, cfg = self.hosted, message, self.services.config
        name = hosted.spec.agent
        attempt = env.attempts + 1
        ctx: MessageContext[T] = MessageContext(
            agent=name,
            sender=env.sender,
            message_id=env.id,
            kind=env.kind,
            attempt=attempt,
            created_at=env.created_at,
            metadata=env.metadata,
            conversation_id=env.conversation_id,
            in_reply_to=env.in_reply_to,
            seq=env.seq,
        )
        token = CURRENT_AGENT.set(name)
        log_tokens = structlog.contextvars.bind_contextvars(agent=name, message_id=str(env.id))
        hosted.inflight = env
        try:
            result = await self.agent.on_message(env.payload, ctx)
        except Exception as exc:
            if hosted.fenced:  # an error of the cancellation (its database cut off): not the handler's
                raise
            env.attempts = attempt
            final = attempt >= cfg.max_attempts
            answered = env.kind is MessageKind.REQUEST and (final or isinstance(exc, AgentMessagingError))
            if self.services.tracing and (answered or final):
                fail(exc)  # the exception stops here: this attempt's span failed (one that leaves fails it)
            if answered:
                hosted.inflight = None
                # the error, not its traceback: that goes to the caller (HandlerError.remote_traceback) and into
                # the reply; rendered here (a console renderer's rich traceback with locals) it could block the
                # event loop for seconds on a deep stack (a model library's), delaying the answer
                log.warning("agent.call_failed", agent=name, message_id=str(env.id), attempt=attempt, exc_info=exc)
                await self._reply(env, None, error=failure_reply(name, exc))
                self.services.writer.submit_nowait([Write(store.HANDLED, (env.id, attempt))])
                return None
            if final:
                hosted.inflight = None
                await self._dead_letter(env, exc)
                return None
            hosted.restarts += 1
            self.services.writer.submit_nowait(
                [
                    Write(store.ATTEMPT, (env.id, attempt)),
                    Write(agent_store.AGENT_RESTARTS, (hosted.agent.id, hosted.restarts, _error_text(exc))),
                ]
            )
            fields = {"message_id": str(env.id), "attempt": attempt, "error": repr(exc)}
            log.warning("agent.handler_failed", agent=name, exc_info=exc, **fields)
            raise
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            CURRENT_AGENT.reset(token)
        hosted.inflight = None
        if env.kind is MessageKind.REQUEST and result is not None:
            await self._reply(env, result)
        self.services.writer.submit_nowait([Write(store.HANDLED, (env.id, attempt))])
        return result

    async def _reply(self, request: Envelope[T], result: Any, *, error: dict[str, Any] | None = None) -> None:
        await answer(self.services, self.calls, self.delivered, request, result, error=error)

    async def _dead_letter(self, env: Envelope[T], exc: BaseException) -> None:
        hosted = self.hosted
        error = _error_text(exc)
        await self.services.writer.write(
            [
                Write(store.DEAD, (env.id, env.attempts)),
                Write(store.DEAD_LETTER, (env.id, hosted.agent.id, env.attempts, error)),
            ]
        )
        # A catch-up that reads the message after this commit and still finds it unread and
        # not dead is seeing a retry (from any process), and may queue it again.
        hosted.dead[env.id] = anyio.current_time()
        log.warning(
            "agent.dead_letter",
            agent=hosted.spec.agent,
            message_id=str(env.id),
            attempts=env.attempts,
            error=error,
            exc_info=exc,
        )


async def answer(
    services: Services[T],
    calls: Calls[T],
    delivered: Delivered,
    request: Envelope[T],
    result: Any,
    *,
    error: dict[str, Any] | None = None,
) -> None:
    """Record a hosted handler's answer to ``request``: its ``result``, or (``error``) what it raised.

    A result that is not a valid message is answered with that error instead, so the caller (in any
    process) learns at once. A reply that loses the claim (someone answered with ``reply()`` first, or the
    conversation ended) is dropped.
    """
    value: T | None = None
    text = "null"
    if error is None:
        try:
            value, text = services.codec.prepare(result, "reply")
        except InvalidMessage as exc:
            log.warning("conversation.invalid_reply", agent=request.recipient, request_id=str(request.id), error=exc)
            error = error_reply(request.recipient, exc, "")
            value, text = None, "null"
    directory = services.directory
    responder = await directory.by_id(request.recipient_id)
    waiting = await directory.by_id(request.sender_id)
    try:
        env, consumed, won = await calls.record_reply(
            responder, waiting, request.id, request.conversation_id, value, text, error=error
        )
    except PersistenceUnavailable:
        raise  # the handler is retried: its message is not marked handled
    except Exception as exc:
        if error is not None:
            raise
        log.warning("conversation.invalid_reply", agent=request.recipient, request_id=str(request.id), error=exc)
        problem = InvalidMessage(f"{request.recipient!r} replied with a value that cannot be stored: {exc}")
        error = error_reply(request.recipient, problem, "")
        env, consumed, won = await calls.record_reply(
            responder, waiting, request.id, request.conversation_id, None, "null", error=error
        )
    if not won:
        log.info("agent.reply_dropped", agent=request.recipient, request_id=str(request.id), reason="answered or ended")
    elif not consumed:
        await delivered([env])


def _process_attributes(agent: str, env: Envelope[Any]) -> dict[str, Any]:
    """The attributes of the span that handles ``env`` in ``agent``'s actor."""
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": agent,
        "messaging.message.id": str(env.id),
        "agent_messaging.sender": env.sender,
        "agent_messaging.message.kind": env.kind.value,
        "agent_messaging.attempt": env.attempts + 1,
    }
    if env.conversation_id is not None:
        attributes["messaging.message.conversation_id"] = str(env.conversation_id)
    if env.in_reply_to is not None:
        attributes["agent_messaging.in_reply_to"] = str(env.in_reply_to)
    return attributes


def failure_reply(agent: str, exc: BaseException) -> dict[str, Any]:
    """The error reply for an exception a handler raised (with its traceback)."""
    return error_reply(agent, exc, _traceback(exc))


def _error_text(exc: BaseException) -> str:
    return storable_text(f"{type(exc).__name__}: {exc}")


def _traceback(exc: BaseException) -> str:
    return storable_text("".join(traceback.format_exception(exc))[-20_000:])
