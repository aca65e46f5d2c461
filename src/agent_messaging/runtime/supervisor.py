"""Supervisors: Erlang/OTP-style restart of crashed actors.

A :class:`Supervisor` runs as a task: ``await task_group.start(supervisor.run)``.
Children are added while it runs (:meth:`Supervisor.start_child`); each child
costs one task. When a child crashes, the supervisor logs ``actor.crashed``,
counts it, and - depending on the child's :class:`RestartType` - restarts it
after an exponential backoff on the *same* ref and mailbox (``actor.restarted``):
only that child with ``ONE_FOR_ONE``, every child with ``ONE_FOR_ALL`` (the
others finish their current message, run ``on_stop`` and restart; their
mailboxes are kept).

Restart intensity: more than ``max_restarts`` restarts within ``within``
seconds and the supervisor fails - it stops all children (their pending asks
fail with ``ActorStopped``), logs ``supervisor.failed`` and raises
:class:`~agent_messaging.errors.SupervisorFailed` out of ``run``, so that its
parent decides: a task group sees the error, and a parent supervisor (the
child was started from a :class:`SupervisorSpec`) treats it as a crash.

A child with ``escalate=False`` has its own intensity instead: past it, the
child alone stops for good (``actor.gave_up``) and ``on_child_failed(name, exc)``
is called; the supervisor and the siblings are not touched.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Generic, TypeVar, overload

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._log import get_logger
from ..errors import (
    ActorStopped,
    AlreadyExists,
    InvalidArgument,
    LifecycleError,
    NotFound,
    SupervisorFailed,
)
from .actor import Actor, ActorRef, _new_ref, _run_instance

__all__ = ["ChildSpec", "RestartType", "Strategy", "Supervisor", "SupervisorSpec", "SupervisorStatistics"]

M = TypeVar("M")
log = get_logger("agent_messaging.supervisor")


class RestartType(StrEnum):
    """When a child is restarted."""

    PERMANENT = "permanent"
    """Always: after a crash and after a normal exit (``stop_self``)."""
    TRANSIENT = "transient"
    """Only after a crash."""
    TEMPORARY = "temporary"
    """Never; a crash stops it for good (and calls ``on_child_failed``)."""


class Strategy(StrEnum):
    """Which children a crash restarts."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """Every child (TEMPORARY siblings are stopped, not restarted)."""


@dataclass(frozen=True, slots=True)
class ChildSpec(Generic[M]):
    """How to run one actor child. ``factory`` makes a fresh instance for each (re)start."""

    name: str
    factory: Callable[[], Actor[M]]
    restart: RestartType = RestartType.PERMANENT
    mailbox_size: int = 1000
    escalate: bool = True
    """``False``: past its own restart intensity the child is stopped and reported, not escalated."""


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """How to run a nested supervisor as a child; its ``SupervisorFailed`` counts as a crash."""

    name: str
    factory: Callable[[], Supervisor]
    restart: RestartType = RestartType.PERMANENT
    escalate: bool = True


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    """A snapshot of a supervisor, as returned by :meth:`Supervisor.statistics`."""

    children: int
    restarts: int
    """Child restarts since the supervisor started (every child restarted by ONE_FOR_ALL counts)."""
    failures: int
    """Child crashes since the supervisor started."""
    child_restarts: dict[str, int]
    """Restarts of each current child."""


class _State(Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class _Child:
    """A child's bookkeeping; it outlives the instances it runs."""

    __slots__ = ("closing", "done", "instance", "recent", "ref", "restarts", "scope", "sibling_delay", "spec")

    def __init__(self, spec: ChildSpec[Any] | SupervisorSpec) -> None:
        self.spec = spec
        self.ref: ActorRef[Any] | None = _new_ref(spec.name, spec.mailbox_size) if isinstance(spec, ChildSpec) else None
        self.instance: Supervisor | None = None
        self.closing = self.ref._closing if self.ref is not None else anyio.Event()
        self.done = anyio.Event()
        self.restarts = 0
        self.scope = anyio.CancelScope()
        self.recent: deque[float] = deque()
        self.sibling_delay: float | None = None

    @property
    def handle(self) -> ActorRef[Any] | Supervisor:
        handle = self.ref if self.ref is not None else self.instance
        assert handle is not None
        return handle

    async def run_instance(self, ready: Callable[[], None]) -> None:
        spec = self.spec
        if isinstance(spec, ChildSpec):
            assert self.ref is not None
            await _run_instance(self.ref, spec.factory, ready)
        else:
            supervisor = spec.factory()

            def supervisor_ready() -> None:
                self.instance = supervisor  # visible once it runs
                if self.closing.is_set():
                    supervisor._request_stop()
                ready()

            await supervisor._serve(supervisor_ready)

    def request_exit(self) -> None:
        if self.ref is not None:
            self.ref._request_exit()
        elif self.instance is not None:
            self.instance._request_stop()

    def request_stop(self) -> None:
        self.closing.set()
        if self.ref is not None:
            self.ref.request_stop()
        elif self.instance is not None:
            self.instance._request_stop()

    def finish(self) -> None:
        self.closing.set()
        if self.ref is not None:
            self.ref._finish()


class Supervisor:
    """Runs actor children and restarts them when they crash (see the module docstring).

    Run it with ``await task_group.start(supervisor.run)``; stop it with
    :meth:`stop`, or by cancelling its task (children are cancelled, their
    ``on_stop`` runs shielded). A supervisor runs once.
    """

    def __init__(
        self,
        name: str,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff_initial: float = 0.01,
        backoff_max: float = 1.0,
        backoff_factor: float = 2.0,
        shutdown_timeout: float = 10.0,
        on_child_failed: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        if max_restarts < 0 or within <= 0 or backoff_initial < 0 or backoff_max < 0 or backoff_factor < 1:
            raise InvalidArgument(
                f"supervisor {name!r}: need max_restarts >= 0, within > 0, backoffs >= 0 and backoff_factor >= 1"
            )
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self.shutdown_timeout = shutdown_timeout
        """Seconds ``stop`` lets children drain before cancelling them."""
        self.on_child_failed = on_child_failed
        """Called (in the child's task; must not block) when a child stops for good after a crash."""
        self._state = _State.NEW
        self._children: dict[str, _Child] = {}
        self._recent: deque[float] = deque()
        self._restarts = 0
        self._failures = 0
        self._failure: SupervisorFailed | None = None
        self._tg: TaskGroup | None = None
        self._stop_event: anyio.Event | None = None
        self._done: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self._state.value} children={len(self._children)}>"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Supervise until :meth:`stop` (returns) or until the restart intensity is exceeded.

        :raises SupervisorFailed: too many restarts; every child has been stopped.
        :raises LifecycleError: the supervisor already ran.
        """
        await self._serve(task_status.started)

    async def _serve(self, ready: Callable[[], None]) -> None:
        if self._state is not _State.NEW:
            raise LifecycleError(f"supervisor {self.name!r} can run only once")
        self._state = _State.RUNNING
        self._stop_event = anyio.Event()
        self._done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                ready()
                await self._stop_event.wait()
                self._state = _State.STOPPING
                for child in list(self._children.values()):
                    child.request_stop()
                with anyio.move_on_after(self.shutdown_timeout):
                    for child in list(self._children.values()):
                        await child.done.wait()
                tg.cancel_scope.cancel()
        finally:
            self._state = _State.STOPPED
            self._tg = None
            self._done.set()
        if self._failure is not None:
            raise self._failure

    def _request_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        elif self._state is _State.NEW:
            self._state = _State.STOPPED

    async def stop(self) -> None:
        """Stop every child gracefully (each drains its mailbox and runs ``on_stop``) and wait until ``run`` ends.

        Children still running after ``shutdown_timeout`` are cancelled. Do not await it
        from one of this supervisor's children: it would wait for itself.
        """
        self._request_stop()
        if self._done is not None:
            await self._done.wait()

    @overload
    async def start_child(self, spec: ChildSpec[M]) -> ActorRef[M]: ...
    @overload
    async def start_child(self, spec: SupervisorSpec) -> Supervisor: ...
    async def start_child(self, spec: ChildSpec[Any] | SupervisorSpec) -> ActorRef[Any] | Supervisor:
        """Start a child and return once it started: its ref, or the nested supervisor.

        :raises AlreadyExists: a child of that name is running.
        :raises ActorStopped: the supervisor is not running, or the child was killed before it started.
        :raises Exception: whatever the first ``on_start`` raised (the child is not added).
        """
        if self._state is not _State.RUNNING or self._tg is None:
            raise ActorStopped(self.name, "is not running")
        if spec.name in self._children:
            raise AlreadyExists("child", spec.name)
        child = _Child(spec)
        self._children[spec.name] = child
        try:
            handle: ActorRef[Any] | Supervisor = await self._tg.start(self._run_child, child, name=f"actor:{spec.name}")
        except RuntimeError:  # anyio: the task ended without calling started() (or on_start raised one)
            if child.scope.cancel_called:  # kill_child
                raise ActorStopped(spec.name, "was stopped before it started") from None
            raise
        return handle

    def kill_child(self, name: str) -> None:
        """Stop a child for good at once: its running message is cancelled (not handled), queued tells are
        dropped and queued asks fail with ``ActorStopped``; ``on_stop`` runs, shielded. Returns at once;
        ``wait_stopped`` on its ref waits until it has stopped.

        :raises NotFound: no such child.
        """
        child = self._lookup(name)
        child.closing.set()
        child.scope.cancel()

    async def wait_child_gone(self, name: str) -> bool:
        """Wait until no child named ``name`` runs (one being stopped or killed has finished stopping), so a
        new child may take the name; a running child is waited for only if it is stopping. Returns whether
        the name is free."""
        child = self._children.get(name)
        if child is None:
            return True
        if not child.closing.is_set():
            return False
        await child.done.wait()
        return True

    async def stop_child(self, name: str) -> None:
        """Stop a child gracefully for good (it drains its mailbox first) and wait until it stopped.

        :raises NotFound: no such child.
        """
        child = self._lookup(name)
        child.request_stop()
        await child.done.wait()

    def child(self, name: str) -> ActorRef[Any] | Supervisor:
        """The ref of an actor child, or the latest started instance of a nested supervisor.

        :raises NotFound: no such child.
        """
        return self._lookup(name).handle

    def children(self) -> list[str]:
        """Names of the current children, in start order."""
        return list(self._children)

    def statistics(self) -> SupervisorStatistics:
        """Return a snapshot of children and restart counters."""
        return SupervisorStatistics(
            children=len(self._children),
            restarts=self._restarts,
            failures=self._failures,
            child_restarts={name: child.restarts for name, child in self._children.items()},
        )

    def _lookup(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise NotFound(f"supervisor {self.name!r} has no child {name!r}") from None

    async def _run_child(self, child: _Child, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        spec = child.spec
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started(child.handle)

        try:
            with child.scope:
                await self._supervise(child, ready, lambda: started)
        finally:
            child.finish()
            if self._children.get(spec.name) is child:
                del self._children[spec.name]
            child.done.set()

    async def _supervise(self, child: _Child, ready: Callable[[], None], started: Callable[[], bool]) -> None:
        spec = child.spec
        while True:
            error: Exception | None = None
            try:
                await child.run_instance(ready)
            except Exception as exc:
                if not started():
                    raise
                error = exc
                self._failures += 1
                log.warning(
                    "actor.crashed", supervisor=self.name, actor=spec.name, restarts=child.restarts, error=repr(exc)
                )
            if child.closing.is_set() or self._state is not _State.RUNNING:
                return
            if error is None and child.sibling_delay is not None:
                if spec.restart is RestartType.TEMPORARY:
                    return
                delay = child.sibling_delay
            else:
                maybe_delay = self._restart_delay(child, error)
                if maybe_delay is None:
                    return
                delay = maybe_delay
                if self.strategy is Strategy.ONE_FOR_ALL:
                    for other in list(self._children.values()):
                        if other is not child:
                            other.sibling_delay = delay
                            other.request_exit()
            with anyio.move_on_after(delay):
                await child.closing.wait()
            if child.closing.is_set():
                return
            child.sibling_delay = None
            child.restarts += 1
            self._restarts += 1
            log.info("actor.restarted", supervisor=self.name, actor=spec.name, restarts=child.restarts, delay=delay)

    def _restart_delay(self, child: _Child, error: Exception | None) -> float | None:
        """Decide on a restart after ``child`` exited: its backoff, or ``None`` (stopped for good)."""
        spec = child.spec
        if spec.restart is RestartType.TEMPORARY or (spec.restart is RestartType.TRANSIENT and error is None):
            if error is not None:
                self._report(spec.name, error)
            return None
        now = anyio.current_time()
        child.recent.append(now)
        _prune(child.recent, now - self.within)
        if spec.escalate:
            self._recent.append(now)
            _prune(self._recent, now - self.within)
            if len(self._recent) > self.max_restarts:
                self._fail(spec.name, error)
                return None
        elif len(child.recent) > self.max_restarts:
            log.error(
                "actor.gave_up", supervisor=self.name, actor=spec.name, restarts=child.restarts, error=repr(error)
            )
            self._report(spec.name, error if error is not None else ActorStopped(spec.name, "exited too often"))
            return None
        delay = self.backoff_initial * self.backoff_factor ** (len(child.recent) - 1)
        return min(self.backoff_max, delay)

    def _report(self, name: str, error: BaseException) -> None:
        if self.on_child_failed is not None:
            self.on_child_failed(name, error)

    def _fail(self, name: str, error: Exception | None) -> None:
        if self._failure is not None:
            return
        self._failure = SupervisorFailed(self.name, self.max_restarts, self.within, error)
        fields = {"max_restarts": self.max_restarts, "within": self.within, "error": repr(error)}
        log.error("supervisor.failed", supervisor=self.name, actor=name, **fields)
        self._state = _State.STOPPING
        if self._tg is not None:
            self._tg.cancel_scope.cancel()


def _prune(times: deque[float], cutoff: float) -> None:
    while times and times[0] < cutoff:
        times.popleft()
