"""Hosting agents: one supervised actor per hosted agent, fed in order and at least once.

A message reaches an agent actor three ways: straight after its commit when
the sender is in this process; from the database when the agent starts
(everything unread, in order, before new messages); and from the database when
a NOTIFY or the periodic sweep says another process wrote something for it.
Each hosted agent remembers the ids it has queued so a message is queued once.

Hosting is claimed through this runtime's presence: an agent hosted by another
live runtime waits here on *standby* and is taken over when that runtime dies.
Past its restart intensity an agent is marked ``failed``. The handling of each
message (retries, dead letters, replies) is the agent actor's
(:mod:`.agent_actor`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._log import get_logger
from ..errors import ActorStopped, NotFound
from ..models import AgentInfo, AgentStatus, MessageKind
from ..persistence.store import messages as store, waits
from ..runtime.supervisor import ChildSpec, Supervisor
from .agent_actor import AgentActor, Bind, HostedAgent, answer, failure_reply
from .calls import Calls
from .envelope import Envelope, dead_letter_undecodable, decode_rows
from .registry import HostSpec, Registry
from .services import Services

__all__ = ["RESTART_PREFIX", "AgentHost"]

T = TypeVar("T")
log = get_logger("agent_messaging.agent")
_PAGE = 500
#: NOTIFY key prefix asking the runtime that hosts an agent to restart it (``restart:<agent id>``).
RESTART_PREFIX = "restart:"
#: NOTIFY key saying an agent was registered (runtimes with specs waiting for their agent look them up).
REGISTERED_KEY = "registered"


class AgentHost(Generic[T]):
    """Runs the agent supervisor and feeds hosted agents their messages."""

    def __init__(self, services: Services[T], registry: Registry[T], calls: Calls[T], bind: Bind) -> None:
        self.services = services
        self.registry = registry
        self.calls = calls
        self.bind = bind
        self.presence = services.presence
        self.hosted: dict[str, HostedAgent[T]] = {}
        self.by_id: dict[uuid.UUID, HostedAgent[T]] = {}
        self.waiting: dict[str, HostSpec] = {}
        self.standby: dict[str, tuple[HostSpec, AgentInfo]] = {}
        self.turn_owned: set[str] = set()
        """Agents whose meeting turns (only) are taken here (``register_turn_handler`` without hosting)."""
        self.on_turns_taken: Callable[[list[str]], None] | None = None
        """Called with the agents whose meeting turns this runtime has just started to take."""
        self._turns_only: dict[str, tuple[HostSpec, AgentInfo]] = {}
        self.epoch = 0
        """How many times this runtime fenced itself (a claim made across a fence is void)."""
        self._taking = anyio.Lock()
        self._failed: set[str] = set()  # failed agents put on standby by a fence: back failed if still stored so
        self._pending: list[HostSpec] = []
        self._sweeping = False
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
        self._tg: TaskGroup | None = None
        services.news.subscribe(self.on_news)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the agent supervisor, host every registered spec, and serve until cancelled.

        The task group stays open until then, also after :meth:`drain` stopped the supervisor: news that
        arrives meanwhile must find it open. It is forgotten before it closes, so nothing starts in it then.
        """
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await tg.start(self.supervisor.run)
                await self.host_many(self.registry.specs())
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None

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
        specs = [spec for spec in specs if spec.agent not in self.hosted and spec.agent not in self.turn_owned]
        if not specs:
            return
        found = await self.services.directory.agents.get_many([spec.agent for spec in specs])
        ready: list[tuple[HostSpec, AgentInfo]] = []
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
        epoch = self.epoch
        claimed = await self._claim(ready)
        restarts = await self.services.directory.agents.restart_counts(list(claimed))
        started: list[HostedAgent[T]] = []
        for spec, agent in ready:
            if agent.id not in claimed:
                self.standby[spec.agent] = (spec, agent)
                log.info("agent.hosted_elsewhere", agent=spec.agent)
                continue
            self.standby.pop(spec.agent, None)
            hosted = await self._start_actor(spec, agent, restarts.get(agent.id, 0), epoch, catch_up=False)
            if hosted is not None:
                started.append(hosted)
        self._turns_taken([spec.agent for spec, agent in ready if agent.id in claimed])
        if started:
            with_news = await self._with_unread(started)
            for hosted in started:
                if hosted.agent.id in with_news or hosted.poked:
                    self._start_catch_up(hosted)
                else:  # nothing unread, nothing arrived meanwhile: deliveries may go straight in
                    hosted.catching_up = False

    async def _claim(self, pairs: list[tuple[HostSpec, AgentInfo]]) -> set[uuid.UUID]:
        """Claim these agents for this runtime, recording which of them it takes the meeting turns of (a claim
        that completes after the runtime fenced itself counts for nothing: see :meth:`_start_actor`)."""
        turns = [self.registry.has_turn_handler(spec.agent) for spec, _agent in pairs]
        return await self.presence.claim([agent.id for _spec, agent in pairs], turns)

    def _turns_taken(self, agents: list[str]) -> None:
        taken = [name for name in agents if self.takes_turns(name)]
        if taken and self.on_turns_taken is not None:
            self.on_turns_taken(taken)

    def takes_turns(self, agent: str) -> bool:
        """Whether this runtime takes ``agent``'s meeting turns (it has a turn handler for it and owns it)."""
        return self.registry.has_turn_handler(agent) and (agent in self.hosted or agent in self.turn_owned)

    async def _with_unread(self, agents: list[HostedAgent[T]]) -> set[uuid.UUID]:
        """The ids of those of ``agents`` with unread messages in the database (one query)."""
        return await store.with_unread(self.services.db, [hosted.agent.id for hosted in agents])

    async def _start_actor(
        self, spec: HostSpec, agent: AgentInfo, restarts: int, epoch: int, *, catch_up: bool = True
    ) -> HostedAgent[T] | None:
        """Start hosting ``agent`` claimed in fencing ``epoch`` (put back on standby if the runtime fenced since)."""
        if epoch != self.epoch:
            self.standby[spec.agent] = (spec, agent)
            return None
        if spec.agent in self.hosted or spec.agent in self.turn_owned:  # started by a concurrent claim
            return None
        if spec.turns_only:
            self.turn_owned.add(spec.agent)
            self._turns_only[spec.agent] = (spec, agent)
            log.info("agent.turns_taken_here", agent=spec.agent)
            return None
        # its actor of before a fence may still be stopping (bounded: on_stop and a query in flight)
        if not await self.supervisor.wait_child_gone(spec.agent):
            log.warning("agent.already_running", agent=spec.agent)
            return None
        # failed before the fence: back as it was, unless restarted meanwhile (known before it is seen hosted)
        failed = spec.agent in self._failed and agent.id in await self.services.directory.agents.failed([agent.id])
        if spec.agent in self.hosted or epoch != self.epoch:  # started meanwhile, or fenced
            return await self._start_actor(spec, agent, restarts, epoch, catch_up=catch_up)
        self._failed.discard(spec.agent)
        hosted: HostedAgent[T] = HostedAgent(spec, agent, restarts)
        self.hosted[spec.agent] = hosted
        self.by_id[agent.id] = hosted
        if failed:
            hosted.failed = True
            hosted.catching_up = False
            return None
        try:
            hosted.ref = await self.supervisor.start_child(self._child_spec(hosted))
        except ActorStopped:
            if epoch == self.epoch:
                raise
        if epoch != self.epoch:  # fenced while it started: stop it (if fence() could not) and wait for restore
            with contextlib.suppress(NotFound):
                self.supervisor.kill_child(spec.agent)
            if self.hosted.get(spec.agent) is hosted:
                del self.hosted[spec.agent]
                self.by_id.pop(agent.id, None)
            self.standby[spec.agent] = (spec, agent)
            return None
        log.info("agent.hosted", agent=spec.agent)
        if catch_up:
            self._start_catch_up(hosted)
        return hosted

    def _child_spec(self, hosted: HostedAgent[T]) -> ChildSpec[Envelope[T]]:
        return ChildSpec(
            name=hosted.spec.agent,
            factory=lambda: AgentActor(self.services, self.calls, hosted, self.committed, self.bind),
            restart=hosted.spec.restart,
            mailbox_size=self.services.config.mailbox_size,
            escalate=False,
        )

    def _start_catch_up(self, hosted: HostedAgent[T]) -> None:
        if self._tg is None:  # shutting down
            return
        hosted.catching_up = True
        self._tg.start_soon(self._catch_up, hosted)

    async def registered(self, agent: AgentInfo) -> None:
        """An agent was registered here: host it if a spec was waiting for it, and tell the other runtimes
        (one waiting for it hosts it at once, not at its next sweep)."""
        spec = self.waiting.get(agent.external_id)
        if spec is not None:
            await self.host(spec)
        await self.services.writer.write([], notify=[REGISTERED_KEY])

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
        if REGISTERED_KEY in keys and self.waiting and self._tg is not None:
            self._tg.start_soon(self._host_waiting)
        for key in keys:
            restart = key.startswith(RESTART_PREFIX)
            try:
                hosted = self.by_id.get(uuid.UUID(key.removeprefix(RESTART_PREFIX)))
            except ValueError:
                continue
            if hosted is None:
                continue
            if restart:
                if hosted.failed and self._tg is not None:
                    self._tg.start_soon(self.restart, hosted)
            else:
                targets.append(hosted)
        if targets:
            self.poke(targets)

    async def _host_waiting(self) -> None:
        try:
            await self.host_many(list(self.waiting.values()))
        except Exception as exc:  # the sweep tries again
            log.warning("agent.hosting_failed", agents=len(self.waiting), error=repr(exc))

    async def restart(self, hosted: HostedAgent[T]) -> None:
        """Start a ``failed`` agent's actor again (its restart intensity starts afresh) and catch it up."""
        if not hosted.failed or self.hosted.get(hosted.spec.agent) is not hosted:  # not failed, or fenced since
            return
        hosted.failed = False
        epoch = self.epoch
        try:
            hosted.ref = await self.supervisor.start_child(self._child_spec(hosted))
        except ActorStopped:
            if epoch == self.epoch:
                raise
        if epoch != self.epoch:  # fenced while it started: the restore hosts it afresh (it is active again)
            with contextlib.suppress(NotFound):
                self.supervisor.kill_child(hosted.spec.agent)
            return
        log.info("agent.restarted_by_request", agent=hosted.spec.agent)
        self._start_catch_up(hosted)

    async def _sweep(self) -> None:
        """Catch up the agents with unread messages (one query for all) and take over standby agents whose
        host is gone (for a lease: see :mod:`agent_messaging.persistence.presence`)."""
        try:
            live = [hosted for hosted in self.hosted.values() if not hosted.failed]
            if live:
                with_news = await self._with_unread(live)
                self.poke([hosted for hosted in live if hosted.agent.id in with_news])
            await self._take_standby()
            if self.waiting:  # registered by another process meanwhile?
                await self.host_many(list(self.waiting.values()))
        except Exception as exc:  # the next sweep tries again
            log.warning("agent.sweep_failed", error=repr(exc))
        finally:
            self._sweeping = False

    async def _take_standby(self) -> None:
        """Claim the standby agents that nobody (alive) hosts, and start them here (one taker at a time: the
        sweep and a restore may try at once)."""
        async with self._taking:
            await self._take_standby_now()

    async def _take_standby_now(self) -> None:
        if not self.standby:
            return
        wanted = {agent.id: (spec, agent) for spec, agent in self.standby.values()}
        epoch = self.epoch
        claimed = await self._claim(list(wanted.values()))
        restarts = await self.services.directory.agents.restart_counts(list(claimed)) if claimed else {}
        for agent_id in claimed:
            spec, agent = wanted[agent_id]
            self.standby.pop(spec.agent, None)
            log.info("agent.taken_over", agent=spec.agent)
            await self._start_actor(spec, agent, restarts.get(agent_id, 0), epoch)
        self._turns_taken([wanted[agent_id][0].agent for agent_id in claimed])

    # ---------------------------------------------------------------- fencing

    async def fence(self) -> None:
        """This runtime lost its presence lock: stop every agent actor at once and put every agent it owned on
        standby (:meth:`restore` claims them again).

        A running handler is cancelled; its message stays unhandled in the database, so whichever runtime owns
        the agent next delivers it again. A failed agent stays failed. Waits (at most a quarter of the lease)
        for the actors to stop.
        """
        self.epoch += 1
        for name, hosted in self.hosted.items():
            hosted.fenced = True
            self.standby[name] = (hosted.spec, hosted.agent)
            if hosted.failed:
                self._failed.add(name)
        refs = [hosted.ref for hosted in self.hosted.values() if hosted.ref is not None]
        for name in self.supervisor.children():  # every child, also one a restart is starting
            self.supervisor.kill_child(name)
        self.standby.update(self._turns_only)
        self.hosted.clear()
        self.by_id.clear()
        self.turn_owned.clear()
        self._turns_only.clear()
        with anyio.move_on_after(self.presence.lease / 4):
            for ref in refs:
                await ref.wait_stopped()
        log.warning("agent.fenced", stopped=len(refs), standby=len(self.standby))

    async def restore(self) -> None:
        """This runtime holds its presence lock again: claim the agents it owned (those another runtime took
        meanwhile stay on standby here) and start them. The wait-for edges of the calls its killed handlers
        made go first (a killed handler could not always remove its own while the database was away)."""
        await waits.forget_runtime(self.services.db, self.presence.key)
        await self._take_standby()

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
        async with contextlib.aclosing(self.unread(hosted)) as envelopes:  # closed also when the actor stops
            async for env in envelopes:
                if hosted.ref is not None:
                    await hosted.ref.tell(env)

    async def unread(self, hosted: HostedAgent[T]) -> AsyncGenerator[Envelope[T], None]:
        """The agent's unread messages from the database, in order, that are not queued yet (now marked queued).

        Those that cannot be decoded are dead-lettered with the reason (see :mod:`.envelope`): the
        messages behind them are delivered. A reply to a call that still waits in this process is left to
        that call (a reply from another process is written unread, and the NOTIFY that wakes the call also
        wakes this read): the handler sees a reply only when its call stopped waiting for it.
        """
        after, full = 0, True
        codec = self.services.codec
        while full:
            started = anyio.current_time()
            rows = await store.unread_after(self.services.db, hosted.agent.id, after, _PAGE)
            envs, bad = decode_rows(codec, rows)
            if bad:
                await dead_letter_undecodable(self.services.writer, bad)
            for env in envs:
                if env.kind is MessageKind.REPLY and self.calls.takes(env):
                    continue  # a call here reads it (a reply it leaves unread comes at a later read)
                dead_at = hosted.dead.get(env.id)
                if dead_at is not None and started > dead_at:  # dead-lettered here, since retried
                    del hosted.dead[env.id]
                    hosted.known.pop(env.id, None)
                if hosted.mark_known(env.id):
                    yield env
            full = len(rows) == _PAGE
            if rows:
                after = rows[-1]["seq"]

    def _child_failed(self, name: str, exc: BaseException) -> None:
        hosted = self.hosted.get(name)
        if hosted is None:
            return
        hosted.failed = True
        log.error("agent.failed", agent=name, restarts=hosted.restarts, error=repr(exc))
        if self._tg is not None:
            self._tg.start_soon(self._mark_failed, hosted, exc)

    async def _mark_failed(self, hosted: HostedAgent[T], exc: BaseException) -> None:
        await self.services.directory.agents.set_status(hosted.agent.id, AgentStatus.FAILED)
        request = hosted.inflight
        if request is not None and request.kind is MessageKind.REQUEST:  # its caller would wait in vain
            hosted.inflight = None
            error = failure_reply(hosted.spec.agent, exc)
            error["message"] = f"{error['message']} (the agent failed; restart it with restart_agent)"
            await answer(self.services, self.calls, self.committed, request, None, error=error)
