"""Running meetings: the meeting supervisor, the claims on meetings, recovery and takeover.

Each meeting this runtime runs is a :class:`~.actor.MeetingActor` under the
``meetings`` supervisor (restart type *transient*: a crashed actor is
restarted from the meeting's committed state; one that crashes past the
restart intensity gives up, and its waiting callers get the error). A meeting
is run by exactly one runtime at a time: ``meeting_hosts`` records which, and
another runtime may claim it only once that one is gone (see
:mod:`agent_messaging.persistence.store.hosts`).

At start, and at every periodic sweep, the runtime takes over the active
meetings nobody alive runs in which one of its agents with a turn handler takes
part; any other orphan is taken over by the runtime of the next caller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio
from anyio.abc import TaskStatus

from ..._log import get_logger
from ...errors import (
    ActorStopped,
    AgentMessagingError,
    InvalidOperation,
    MailboxFull,
    MeetingEnded,
    NotFound,
    RunnerMoved,
)
from ...models import MeetingEvent, MeetingState, Turn
from ...persistence.store import hosts, meetings as store
from ...runtime.supervisor import ChildSpec, RestartType, Supervisor
from ..registry import Registry
from ..services import Services
from .actor import MeetingActor, MeetingHandle
from .remote import POLL, Poll, flush
from .types import Command, snapshot_of

__all__ = ["MeetingRunners"]

T = TypeVar("T")
log = get_logger("agent_messaging.meeting")
Publish = Callable[[list[MeetingEvent[Any]]], None]
#: Called for each meeting this runtime starts running (the hosted participants attend it).
Started = Callable[[MeetingHandle[Any]], None]


class MeetingRunners(Generic[T]):
    """The meetings this runtime runs, under one supervisor. Run it with ``task_group.start(runners.run)``."""

    def __init__(self, services: Services[T], registry: Registry[T], publish: Publish) -> None:
        self.services = services
        self.registry = registry
        self.publish = publish
        self.handles: dict[UUID, MeetingHandle[T]] = {}
        self.on_started: list[Started] = []
        cfg = services.config
        self.supervisor = Supervisor(
            "meetings",
            max_restarts=cfg.agent_max_restarts,
            within=cfg.agent_restart_window,
            backoff_initial=cfg.restart_backoff_initial,
            backoff_max=cfg.restart_backoff_max,
            shutdown_timeout=cfg.shutdown_grace,
            on_child_failed=self._child_failed,
        )
        self._running = False
        self._sweeping = False
        self.epoch = 0
        """How many times this runtime fenced itself (a claim made across a fence is void)."""
        self._fenced: set[UUID] = set()  # meetings run here when the runtime fenced itself: restore runs them
        self._taking = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the meeting supervisor, take over orphaned meetings, then serve until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.supervisor.run)
                self._running = True
                await self.recover_orphans()
                # the runtime's periodic sweep also takes over meetings orphaned later
                self.services.news.subscribe(self._on_news)
                task_status.started()
        finally:
            self._running = False
            self._tg = None
            self.handles.clear()

    @property
    def running(self) -> bool:
        """Whether meetings can be run here (the runtime is open)."""
        return self._running

    async def spawn(self, handle: MeetingHandle[T], epoch: int) -> None:
        """Start the actor of a meeting this runtime now runs (claimed in fencing ``epoch``: if the runtime
        fenced itself since, the meeting waits for :meth:`restore` instead)."""
        if epoch != self.epoch:
            self._fenced.add(handle.id)
            handle.started.set()
            return
        self.handles[handle.id] = handle

        def factory() -> MeetingActor[T]:
            return MeetingActor(self.services, handle, self.publish, self._stopped)

        child: ChildSpec[Command[T] | Poll] = ChildSpec(
            name=str(handle.id),
            factory=factory,
            restart=RestartType.TRANSIENT,
            mailbox_size=self.services.config.mailbox_size,
            escalate=False,
        )
        try:
            # its actor of before a fence may still be stopping
            if not await self.supervisor.wait_child_gone(child.name):
                raise InvalidOperation(f"meeting {handle.id} is already run here")
            handle.ref = await self.supervisor.start_child(child)
        except BaseException as exc:
            if self.handles.get(handle.id) is handle:
                del self.handles[handle.id]
            if isinstance(exc, ActorStopped) and epoch != self.epoch:  # fenced while it started
                raise RunnerMoved(handle.id) from None
            raise
        finally:
            handle.started.set()
        if epoch != self.epoch:  # fenced while it started: fence() could not stop it
            self._fence_one(handle)
            return
        for started in self.on_started:
            started(handle)

    def _stopped(self, handle: MeetingHandle[T]) -> None:
        if self.handles.get(handle.id) is handle:
            del self.handles[handle.id]

    def _child_failed(self, name: str, exc: BaseException) -> None:
        handle = self.handles.pop(UUID(name), None)
        if handle is not None:
            log.error("meeting.gave_up", meeting=name, error=repr(exc))
            # the waiting callers get a library error, whatever the actor died of (a driver error, say)
            error = exc if isinstance(exc, AgentMessagingError) else ActorStopped(f"meeting {name}", f"failed: {exc!r}")
            handle.fail_waiters(error)
            if handle.outbox and self._tg is not None:
                self._tg.start_soon(flush, self.services, handle.outbox)

    async def submit(self, handle: MeetingHandle[T], command: Command[T]) -> Turn[T] | None:
        """Hand ``command`` to the meeting's actor and wait for its result (``MeetingEnded`` once it ended)."""
        await handle.started.wait()  # a meeting being taken over: its actor is loading it
        ref = handle.ref
        if ref is None:
            raise InvalidOperation(f"meeting {handle.id} could not be run here; call again to retry")
        try:
            await ref.request(command, command.slot)
            return await command.slot.wait()
        except ActorStopped as exc:
            if exc.actor != ref.name:  # failed by the meeting itself (the runtime is closing): as it says
                raise
            # the actor stopped for good before it took the command, or while it did
            actor = handle.actor
            if actor is not None and actor.state is MeetingState.ENDED:
                raise MeetingEnded(handle.id) from None
            if self.handles.get(handle.id) is not handle:  # fenced, or moved to another runtime
                raise RunnerMoved(handle.id) from None
            raise

    # ------------------------------------------------------------------ fencing

    async def fence(self) -> None:
        """This runtime lost its presence lock: stop every meeting actor at once (:meth:`restore` runs them
        again if no other runtime took them over meanwhile).

        Callers waiting here get ``RunnerMoved`` (call again); callers in other runtimes keep waiting on their
        command rows for whichever runtime runs the meeting next. Waits (at most a quarter of the lease) for
        the actors to stop.
        """
        self.epoch += 1
        handles = list(self.handles.values())
        for handle in handles:
            self._fence_one(handle)
        with anyio.move_on_after(self.services.presence.lease / 4):
            for handle in handles:
                if handle.ref is not None:
                    await handle.ref.wait_stopped()
        if handles:
            log.warning("meetings.fenced", meetings=len(handles))

    def _fence_one(self, handle: MeetingHandle[T]) -> None:
        self._fenced.add(handle.id)
        if self.handles.get(handle.id) is handle:
            del self.handles[handle.id]
        handle.fail_waiters(RunnerMoved(handle.id), remote=False)
        with contextlib.suppress(NotFound):  # already stopped
            self.supervisor.kill_child(str(handle.id))

    async def restore(self) -> None:
        """This runtime holds its presence lock again: run the meetings it ran (those no other runtime took)."""
        fenced = sorted(self._fenced)
        if fenced:
            await self.take_over(fenced)
            # done with those run here now and those the database no longer names this runtime for
            mine = await hosts.still_runs(self.services.db, fenced, self.services.presence.key)
            self._fenced.difference_update(mid for mid in fenced if mid in self.handles or mid not in mine)
        await self.recover_orphans()

    # ------------------------------------------------------------------ takeover

    def _on_news(self, keys: list[str] | None) -> None:
        if keys is None:
            if not self._sweeping and self._tg is not None:
                self._sweeping = True
                self._tg.start_soon(self._sweep)
            return
        for key in keys:
            if key.startswith("m:"):
                try:
                    handle = self.handles.get(UUID(key[2:]))
                except ValueError:
                    continue
                if handle is not None:
                    self.poll(handle)

    def poll(self, handle: MeetingHandle[T]) -> None:
        """Have the meeting's actor take the commands other runtimes wrote for it."""
        if handle.ref is not None:
            with contextlib.suppress(MailboxFull, ActorStopped):  # a full mailbox will poll anyway, soon
                handle.ref.tell_nowait(POLL)

    async def _sweep(self) -> None:
        try:
            if self._fenced and self.services.presence.held:  # a restore that failed or is due: try again
                await self.restore()
            await self.recover_orphans()
            for meeting_id in await store.with_pending_commands(self.services.db, list(self.handles)):
                handle = self.handles.get(meeting_id)
                if handle is not None:
                    self.poll(handle)  # a NOTIFY was lost
        except Exception as exc:  # the next sweep tries again
            log.warning("meetings.recovery_failed", error=repr(exc))
        finally:
            self._sweeping = False

    async def recover_orphans(self) -> None:
        """Run the active meetings nobody alive runs in which an agent with a turn handler here takes part.

        Other orphans wait for a participant to call in (:meth:`take_over`).
        """
        local = self.registry.turn_agents()
        if not local:
            return
        found = await hosts.orphan_meetings(self.services.db, local)
        await self.take_over([mid for mid in found if mid not in self.handles])

    async def take_over(self, meeting_ids: list[UUID]) -> None:
        """Claim these meetings if nobody alive runs them, and run the ones claimed from their committed state."""
        if not self._running:
            return
        async with self._taking:  # callers noticing the same orphan at once: one takes it over
            wanted = [mid for mid in meeting_ids if mid not in self.handles]
            epoch = self.epoch
            claimed = await self.services.presence.claim_meetings(wanted)
            if epoch != self.epoch:  # claimed across a fence: restore runs them
                self._fenced.update(claimed)
            elif claimed:
                await self._recover(claimed, epoch)

    async def _recover(self, claimed: dict[UUID, int], epoch: int) -> None:
        """Run the meetings just claimed (id -> claim generation) in fencing ``epoch``, from their committed state."""
        recovered = await store.load_active(self.services.db, self.services.codec.decode, sorted(claimed))
        for row in recovered:
            if row.id in self.handles:
                continue
            if row.speaker_selection != "round_robin":
                log.warning("meeting.selector_lost", meeting=str(row.id), fallback="round_robin")
            snapshot = snapshot_of(row)
            handle: MeetingHandle[T] = MeetingHandle(
                row.id, row.organization_id, row.host, None, snapshot, claimed[row.id]
            )
            await self.spawn(handle, epoch)
            log.info("meeting.recovered", meeting=str(row.id), floor_holder=row.floor_holder, turn=row.turn_number)
        if recovered:
            log.info("meetings.recovered", count=len(recovered))
