"""Hosting agents: one supervised actor per hosted agent, fed in order and at least once.

A message reaches an agent actor three ways: straight after its commit when
the sender is in this process; from the database when the agent starts
(everything unread, in order, before new messages); and from the database when
a NOTIFY or the periodic sweep says another process wrote something for it.
Each actor remembers the ids it has queued so a message is queued once.

The handler runs one message at a time. If it returns, the message is marked
handled (batched through the writer; losing that mark only means a
redelivery). If it raises, the attempt is recorded and the actor crashes; the
supervisor restarts it with backoff and the fresh instance retries the same
message first. After ``max_attempts`` the message is dead-lettered and the
agent moves on. Past its restart intensity an agent is marked failed.
"""

from __future__ import annotations

import contextvars
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import structlog
from anyio.abc import TaskStatus

from ..errors import ActorStopped
from ..models import Agent as AgentModel
from ..models import AgentStatus, MessageKind
from ..persistence.presence import Presence
from ..persistence.writer import Write
from ..runtime._services import Services
from ..runtime.actor import Actor, ActorRef
from ..runtime.registry import HostSpec, Registry
from ..runtime.supervisor import ChildSpec, Supervisor
from ._delivery import Envelope, fetch_messages
from .agent import Agent, MessageContext

__all__ = ["CURRENT_AGENT", "AgentHost", "HostedAgent"]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.agent")

#: The agent whose handler is running in this task (None outside handlers). Used for deadlock detection.
CURRENT_AGENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_messaging_agent", default=None)

ReplyHook = Callable[[Envelope[Any], Any], Awaitable[None]]
_KNOWN_LIMIT = 100_000
_PAGE = 500


class HostedAgent(Generic[T]):
    """Bookkeeping of one hosted agent that outlives its actor instances."""

    def __init__(self, spec: HostSpec, agent: AgentModel) -> None:
        self.spec = spec
        self.agent = agent
        self.ref: ActorRef[Envelope[T]] | None = None
        self.inflight: Envelope[T] | None = None
        self.known: OrderedDict[uuid.UUID, None] = OrderedDict()
        self.dead: dict[uuid.UUID, float] = {}
        self.restarts = 0
        self.failed = False
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


class _AgentActor(Actor[Envelope[T]]):
    def __init__(self, host: AgentHost[T], hosted: HostedAgent[T]) -> None:
        self.host = host
        self.hosted = hosted
        self.agent: Agent[T] = hosted.spec.make()

    async def on_start(self) -> None:
        await self.agent.on_start()
        pending = self.hosted.inflight
        if pending is not None:
            await self.on_receive(pending)

    async def on_stop(self) -> None:
        await self.agent.on_stop()

    async def on_receive(self, message: Envelope[T]) -> Any:
        return await self.host.handle(self.hosted, self.agent, message)


class AgentHost(Generic[T]):
    """Runs the agent supervisor and feeds hosted agents their messages."""

    def __init__(self, services: Services[T], registry: Registry[T], runtime_id: str) -> None:
        self.services = services
        self.registry = registry
        self.presence = Presence(services.db, runtime_id)
        self.hosted: dict[str, HostedAgent[T]] = {}
        self.by_id: dict[uuid.UUID, HostedAgent[T]] = {}
        self.waiting: dict[str, HostSpec] = {}
        self.standby: dict[str, tuple[HostSpec, AgentModel]] = {}
        self._pending: list[HostSpec] = []
        self._sweeping = False
        self.reply_hook: ReplyHook | None = None
        cfg = services.config
        self.supervisor = Supervisor(
            "agents",
            max_restarts=cfg.agent_max_restarts,
            within=cfg.agent_restart_window,
            backoff_initial=cfg.restart_backoff_initial,
            backoff_max=cfg.restart_backoff_max,
            shutdown_timeout=cfg.shutdown_grace,
            on_child_failed=self._child_failed,
        )
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the agent supervisor, host every registered spec, and serve until cancelled."""
        await self.presence.open()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.supervisor.run)
                await self.host_many(list(self.registry.hosts.values()))
                task_status.started()
        finally:
            await self.presence.close()

    async def drain(self) -> None:
        """Stop intake and let running handlers finish (bounded by the caller's cancel scope)."""
        await self.supervisor.stop()

    async def host(self, spec: HostSpec) -> None:
        """Start the agent actor for ``spec`` (or wait for the agent to be registered)."""
        await self.host_many([spec])

    def host_soon(self, spec: HostSpec) -> None:
        """Host ``spec`` from a task of this host; specs added together are hosted as one batch."""
        self._pending.append(spec)
        if len(self._pending) == 1 and self._tg is not None:
            self._tg.start_soon(self._host_pending)

    async def _host_pending(self) -> None:
        await anyio.lowlevel.checkpoint()  # let the caller add the rest of its batch
        specs, self._pending = self._pending, []
        try:
            await self.host_many(specs)
        except Exception as exc:  # the specs stay registered; the sweep retries the waiting ones
            log.error("agent.hosting_failed", agents=len(specs), error=repr(exc))
            for spec in specs:
                self.waiting.setdefault(spec.agent, spec)

    async def host_many(self, specs: list[HostSpec]) -> None:
        """Start the agent actors for ``specs``: one look-up, one claim and one unread check for all of them.

        An agent not registered yet waits for ``register_agent``; one hosted by another
        live runtime stays on standby here until that runtime goes away.
        """
        specs = [spec for spec in specs if spec.agent not in self.hosted]
        if not specs:
            return
        found = await self.services.directory.repo.get_many([spec.agent for spec in specs])
        ready: list[tuple[HostSpec, AgentModel]] = []
        for spec in specs:
            agent = found.get(spec.agent)
            if agent is None:
                if spec.agent not in self.waiting:
                    self.waiting[spec.agent] = spec
                    log.info("agent.waiting_for_registration", agent=spec.agent)
                continue
            self.services.directory.remember(agent)
            self.waiting.pop(spec.agent, None)
            ready.append((spec, agent))
        claimed = await self.presence.claim([agent.id for _spec, agent in ready])
        started: list[HostedAgent[T]] = []
        for spec, agent in ready:
            if agent.id not in claimed:
                self.standby[spec.agent] = (spec, agent)
                log.info("agent.hosted_elsewhere", agent=spec.agent)
                continue
            self.standby.pop(spec.agent, None)
            started.append(await self._start_actor(spec, agent, catch_up=False))
        if started:
            with_news = await self._with_unread(started)
            for hosted in started:
                if hosted.agent.id in with_news or hosted.poked:
                    self._start_catch_up(hosted)
                else:  # nothing unread, nothing arrived meanwhile: deliveries may go straight in
                    hosted.catching_up = False

    async def _with_unread(self, agents: list[HostedAgent[T]]) -> set[uuid.UUID]:
        """The ids of those of ``agents`` with unread messages in the database (one query)."""
        rows = await self.services.db.fetch(
            "SELECT DISTINCT recipient_id FROM messages WHERE recipient_id = ANY($1::uuid[]) "
            "AND read_at IS NULL AND dead_at IS NULL",
            [[hosted.agent.id for hosted in agents]],
        )
        return {uuid.UUID(str(row["recipient_id"])) for row in rows}

    async def _start_actor(self, spec: HostSpec, agent: AgentModel, *, catch_up: bool = True) -> HostedAgent[T]:
        hosted: HostedAgent[T] = HostedAgent(spec, agent)
        self.hosted[spec.agent] = hosted
        self.by_id[agent.id] = hosted
        child = ChildSpec(
            name=spec.agent,
            factory=lambda: _AgentActor(self, hosted),
            restart=spec.restart,
            mailbox_size=self.services.config.mailbox_size,
            escalate=False,
        )
        hosted.ref = await self.supervisor.start_child(child)
        log.info("agent.hosted", agent=spec.agent)
        if catch_up:
            self._start_catch_up(hosted)
        return hosted

    def _start_catch_up(self, hosted: HostedAgent[T]) -> None:
        hosted.catching_up = True
        assert self._tg is not None
        self._tg.start_soon(self._catch_up, hosted)

    async def registered(self, agent: AgentModel) -> None:
        """An agent was registered: host it if a spec was waiting for it."""
        spec = self.waiting.get(agent.external_id)
        if spec is not None:
            await self.host(spec)

    # ------------------------------------------------------------ delivery

    async def deliver(self, envelopes: list[Envelope[T]]) -> None:
        """Queue committed messages to the agents hosted here (waits while a mailbox is full)."""
        for env in envelopes:
            hosted = self.by_id.get(env.recipient_id)
            if hosted is None or hosted.ref is None or hosted.failed:
                continue
            if hosted.catching_up:
                hosted.poked = True  # the catch-up pass will read it in order
                continue
            if hosted.mark_known(env.id):
                try:
                    await hosted.ref.tell(env)
                except ActorStopped:
                    hosted.known.pop(env.id, None)

    async def committed(self, envelopes: list[Envelope[T]]) -> None:
        """After ``envelopes`` committed: wake this process's waiters on their recipients, deliver to hosted ones."""
        self.services.signals.fire([str(env.recipient_id) for env in envelopes])
        await self.deliver(envelopes)

    def poke(self, targets: list[HostedAgent[T]]) -> None:
        """Have these agents re-read their unread messages from the database."""
        if self._tg is None:
            return
        for hosted in targets:
            if hosted.failed:
                continue
            if hosted.catching_up:
                hosted.poked = True
            else:
                self._start_catch_up(hosted)

    def on_news(self, keys: list[str] | None) -> None:
        """Listener/sweeper subscriber: poke the hosted agents named by ``keys`` (if None: sweep, see below)."""
        if keys is None:
            if not self._sweeping and self._tg is not None:
                self._sweeping = True
                self._tg.start_soon(self._sweep)
            return
        targets = []
        for key in keys:
            try:
                hosted = self.by_id.get(uuid.UUID(key))
            except ValueError:
                continue
            if hosted is not None:
                targets.append(hosted)
        if targets:
            self.poke(targets)

    async def _sweep(self) -> None:
        """Catch up the agents with unread messages (one query for all), keep the liveness lock,
        and take over standby agents whose host died."""
        try:
            live = [hosted for hosted in self.hosted.values() if not hosted.failed]
            if live:
                with_news = await self._with_unread(live)
                self.poke([hosted for hosted in live if hosted.agent.id in with_news])
            await self.presence.ensure_alive()
            if self.standby:
                wanted = {agent.id: (spec, agent) for spec, agent in self.standby.values()}
                for agent_id in await self.presence.claim(list(wanted)):
                    spec, agent = wanted[agent_id]
                    self.standby.pop(spec.agent, None)
                    log.info("agent.taken_over", agent=spec.agent)
                    await self._start_actor(spec, agent)
            if self.waiting:  # registered by another process meanwhile?
                await self.host_many(list(self.waiting.values()))
        except Exception as exc:  # the next sweep tries again
            log.warning("agent.sweep_failed", error=repr(exc))
        finally:
            self._sweeping = False

    async def _catch_up(self, hosted: HostedAgent[T]) -> None:
        """Queue everything unread for ``hosted`` from the database, in order; again while poked meanwhile."""
        try:
            hosted.poked = True
            while hosted.poked:
                hosted.poked = False
                await self._read_unread(hosted)
        except ActorStopped:
            return
        except Exception as exc:  # the sweep will try again
            log.warning("agent.catch_up_failed", agent=hosted.spec.agent, error=repr(exc))
        finally:
            hosted.catching_up = False

    async def _read_unread(self, hosted: HostedAgent[T]) -> None:
        async for env in self.unread(hosted):
            if hosted.ref is not None:
                await hosted.ref.tell(env)

    async def unread(self, hosted: HostedAgent[T]) -> AsyncIterator[Envelope[T]]:
        """The agent's unread messages from the database, in order, that are not queued yet (now marked queued)."""
        after, full = 0, True
        while full:
            started = anyio.current_time()
            envs = await fetch_messages(
                self.services,
                "m.recipient_id = $1 AND m.read_at IS NULL AND m.dead_at IS NULL AND m.seq > $2",
                [hosted.agent.id, after],
                limit=_PAGE,
            )
            for env in envs:
                dead_at = hosted.dead.get(env.id)
                if dead_at is not None and started > dead_at:  # dead-lettered here, since retried
                    del hosted.dead[env.id]
                    hosted.known.pop(env.id, None)
                if hosted.mark_known(env.id):
                    yield env
            full = len(envs) == _PAGE
            if envs:
                after = envs[-1].seq

    # ------------------------------------------------------------- handling

    async def handle(self, hosted: HostedAgent[T], agent: Agent[T], env: Envelope[T]) -> Any:
        """Run the handler for one message (called from the agent's actor task)."""
        attempt = env.attempts + 1
        ctx: MessageContext[T] = MessageContext(
            agent=hosted.spec.agent,
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
        token = CURRENT_AGENT.set(hosted.spec.agent)
        log_tokens = structlog.contextvars.bind_contextvars(agent=hosted.spec.agent, message_id=str(env.id))
        hosted.inflight = env
        try:
            result = await agent.on_message(env.payload, ctx)
        except Exception as exc:
            env.attempts = attempt
            if attempt >= self.services.config.max_attempts:
                hosted.inflight = None
                await self._dead_letter(hosted, env, exc)
                return None
            self.services.writer.submit_nowait([Write("message.attempt", (env.id, attempt))])
            log.warning(
                "agent.handler_failed",
                agent=hosted.spec.agent,
                message_id=str(env.id),
                attempt=attempt,
                error=repr(exc),
            )
            hosted.restarts += 1
            raise
        finally:
            structlog.contextvars.reset_contextvars(**log_tokens)
            CURRENT_AGENT.reset(token)
        hosted.inflight = None
        if env.kind is MessageKind.REQUEST and result is not None and self.reply_hook is not None:
            await self.reply_hook(env, result)
        self.services.writer.submit_nowait([Write("message.handled", (env.id, attempt))])
        return result

    async def _dead_letter(self, hosted: HostedAgent[T], env: Envelope[T], exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"[:4000]
        await self.services.writer.write(
            [
                Write("message.dead", (env.id, env.attempts)),
                Write("dead_letter.insert", (env.id, hosted.agent.id, env.attempts, error)),
            ]
        )
        # A catch-up that reads the message after this commit and still finds it unread and
        # not dead is seeing a retry (from any process), and may queue it again.
        hosted.dead[env.id] = anyio.current_time()
        log.warning(
            "agent.dead_letter", agent=hosted.spec.agent, message_id=str(env.id), attempts=env.attempts, error=error
        )

    def _child_failed(self, name: str, exc: BaseException) -> None:
        hosted = self.hosted.get(name)
        if hosted is None:
            return
        hosted.failed = True
        log.error("agent.failed", agent=name, restarts=hosted.restarts, error=repr(exc))
        if self._tg is not None:
            self._tg.start_soon(self._mark_failed, hosted)

    async def _mark_failed(self, hosted: HostedAgent[T]) -> None:
        await self.services.directory.repo.set_status(hosted.agent.id, AgentStatus.FAILED)
