"""Actors: a task with a mailbox that handles one message at a time.

Subclass :class:`Actor` and override its hooks; the kernel (:func:`spawn` or a
:class:`~agent_messaging.runtime.supervisor.Supervisor`) runs it and hands out
an :class:`ActorRef`, the only way to reach it.

* ``tell`` queues a message; if ``on_receive`` raises for it, ``on_failure``
  runs and the actor crashes (its supervisor decides what happens next).
* ``ask`` queues a message with a one-shot reply slot and returns what
  ``on_receive`` returned; if it raises, the error is re-raised in the asker
  and the actor carries on. The asker's cancel scope bounds the wait.

A ref and its mailbox outlive the actor *instances* behind them: a restart
attaches a fresh instance to the same ref, so queued messages and callers'
refs stay valid. When the actor stops for good, every ask still queued or in
progress fails with :class:`~agent_messaging.errors.ActorStopped`, queued
tells are dropped, and later tells and asks raise ``ActorStopped``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._log import get_logger
from ..errors import ActorStopped, MailboxFull
from ._slot import Slot
from .mailbox import Mailbox, MailboxStatistics

__all__ = ["Actor", "ActorRef", "spawn"]

M = TypeVar("M")

log = get_logger("agent_messaging.actor")
_KERNEL = object()


class _Envelope(Generic[M]):
    """A message in a mailbox; ``reply`` is ``None`` for a tell; ``later``: the actor resolves ``reply`` itself."""

    __slots__ = ("later", "message", "reply")

    def __init__(self, message: M, reply: Slot[Any] | None, later: bool = False) -> None:
        self.message = message
        self.reply = reply
        self.later = later


# ``None`` in a mailbox is a wake-up: it makes an idle actor re-check whether it should exit.
_Item = _Envelope[M] | None


class Actor(Generic[M]):
    """Base class of actors; ``M`` is the type of the messages it receives.

    The kernel sets :attr:`ref` before ``on_start``. Every hook runs in the
    actor's own task, one at a time, never concurrently with another hook.
    """

    ref: ActorRef[M]
    """This actor's ref, set by the kernel before ``on_start``; the same across restarts."""

    stop_timeout: float = 5.0
    """Seconds ``on_stop`` may take (shielded from cancellation) before it is cut short."""

    receive_deadline: float = math.inf
    """Clock time (``anyio.current_time()``) by which, if no message arrived, :meth:`on_timeout` runs.

    The kernel waits for the next message under a cancel scope with this
    deadline (like Erlang's ``receive ... after``): a timer without a timer
    task. ``inf`` (the default) waits for ever. Set it from any hook.
    """

    async def on_start(self) -> None:
        """Run by the kernel before the first message of this instance.

        The actor counts as started (``task_group.start`` returns) once this
        returns. If it raises, ``on_failure(exc, None)`` runs and the start fails:
        the first start raises the error to whoever started the actor; a
        restart counts as a crash.
        """

    async def on_receive(self, message: M) -> Any:
        """Handle one message; the return value is the reply to an ``ask``.

        Run by the actor's task for each message in order. If it raises for an
        ``ask``, the error goes back to the asker and the actor continues; for a
        ``tell``, ``on_failure`` runs and the actor crashes. Cancellation is not
        an error and is never caught.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement on_receive")

    async def on_timeout(self) -> None:
        """Run by the actor's task when :attr:`receive_deadline` passed with the mailbox empty.

        Set a new deadline here (or leave ``inf``), else it runs again at once.
        If it raises, ``on_failure(exc, None)`` runs and the actor crashes.
        """
        self.receive_deadline = math.inf

    async def on_stop(self) -> None:
        """Run by the actor's task when this instance stops without crashing.

        That is after a graceful stop (once the mailbox is drained), after
        ``stop_self``, on a restart caused by a sibling, and when the actor is
        cancelled. It is shielded from cancellation and bounded by
        :attr:`stop_timeout`. If it raises, the instance counts as crashed
        (when it is cancelled, the error is logged as ``actor.stop_failed``
        and the cancellation goes on).
        """

    async def on_failure(self, exc: BaseException, message: M | None) -> None:
        """Run by the actor's task when ``on_receive`` raised for a tell, or ``on_start`` / ``on_timeout`` raised.

        ``message`` is the tell being handled (``None`` for ``on_start`` and ``on_timeout``).
        ``on_stop`` does not run after it. The original error then propagates
        out of the actor; if this hook raises, its error propagates instead,
        chained to the original.
        """

    def stop_self(self) -> None:
        """End this instance normally once the current message is handled.

        ``on_stop`` runs and queued messages stay in the mailbox. A PERMANENT
        child is restarted (and handles them); a TRANSIENT or TEMPORARY child,
        or an actor without a supervisor, stops for good.
        """
        self.ref._request_exit()


class ActorRef(Generic[M]):
    """The handle to an actor; only the kernel makes these.

    It stays valid across restarts. Every method is safe to call from any
    task of the same event loop.
    """

    __slots__ = ("_closing", "_exit_requested", "_in_flight", "_mailbox", "_name", "_stopped")

    def __init__(self, name: str, mailbox_size: int, *, _kernel: object = None) -> None:
        if _kernel is not _KERNEL:
            raise TypeError("ActorRef is made by the kernel: use spawn() or Supervisor.start_child()")
        self._name = name
        self._mailbox: Mailbox[_Item[M]] = Mailbox(name, mailbox_size)
        self._exit_requested = False
        self._in_flight: Slot[Any] | None = None
        self._closing = anyio.Event()
        self._stopped = anyio.Event()

    def __repr__(self) -> str:
        state = "alive" if self.is_alive else "stopped"
        return f"<ActorRef {self._name!r} {state}>"

    @property
    def name(self) -> str:
        """The actor's name, unique within its supervisor."""
        return self._name

    @property
    def is_alive(self) -> bool:
        """``True`` until the actor stops for good (also while it is being restarted)."""
        return not self._stopped.is_set()

    async def tell(self, message: M) -> None:
        """Queue a one-way message, waiting while the mailbox is full.

        :raises ActorStopped: the actor stopped, or is stopping.
        """
        await self._mailbox.send(_Envelope(message, None))

    def tell_nowait(self, message: M) -> None:
        """Queue a one-way message without waiting.

        :raises MailboxFull: the mailbox is full.
        :raises ActorStopped: the actor stopped, or is stopping.
        """
        self._mailbox.send_nowait(_Envelope(message, None))

    async def ask(self, message: M) -> Any:
        """Send a message and return what ``on_receive`` returns for it.

        An error raised by ``on_receive`` is re-raised here (the actor goes
        on). Waits while the mailbox is full; bound the whole call with a
        cancel scope (``anyio.fail_after``). If the caller is cancelled, the
        message may still be handled and its reply is dropped.

        :raises ActorStopped: the actor stopped before (or while) handling it.
        """
        reply: Slot[Any] = Slot()
        await self._mailbox.send(_Envelope(message, reply))
        return await reply.wait()

    async def request(self, message: M, reply: Slot[Any]) -> None:
        """Send a message whose answer the actor hands over later, through ``reply`` (a slot it can reach from
        the message), and return once it is queued; wait on ``reply``.

        The kernel fails ``reply`` when ``on_receive`` raises for the message (the actor goes on) and when the
        actor stops for good before it handled the message, or while it did, with an ``ActorStopped`` naming
        this actor (``ActorStopped.actor == name``). Once ``on_receive`` returned, the actor owns ``reply``.
        One wait instead of an :meth:`ask` that returns a slot to wait on.

        :raises ActorStopped: the actor stopped, or is stopping.
        """
        await self._mailbox.send(_Envelope(message, reply, True))

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the actor's mailbox."""
        return self._mailbox.statistics()

    def request_stop(self) -> None:
        """Start a graceful stop and return at once (safe inside the actor's own handlers).

        New messages are refused with ``ActorStopped``; the actor handles
        what is already queued, runs ``on_stop`` and stops for good. A
        supervised actor that is waiting to be restarted stops without
        handling its queue (queued asks fail with ``ActorStopped``).
        """
        self._mailbox.close_intake()
        self._closing.set()

    async def stop(self) -> None:
        """Stop the actor gracefully (see :meth:`request_stop`) and wait until it has stopped.

        Do not await this from the actor's own handlers: it would wait for
        itself; use :meth:`request_stop` there.
        """
        self.request_stop()
        await self._stopped.wait()

    async def wait_stopped(self) -> None:
        """Wait until the actor has stopped for good, for whatever reason."""
        await self._stopped.wait()

    # -- kernel side -------------------------------------------------------

    def _request_exit(self) -> None:
        """Ask the running instance to exit normally after its current message."""
        self._exit_requested = True
        # Wake it if it is idle; a full mailbox means it is not idle, a closed one that it is exiting anyway.
        with contextlib.suppress(MailboxFull, ActorStopped):
            self._mailbox.send_nowait(None)

    def _finish(self) -> None:
        """Stop for good: fail every pending ask, drop queued tells, close the mailbox."""
        if self._stopped.is_set():
            return
        self._closing.set()
        self._mailbox.close_intake()
        dropped = 0
        while True:
            try:
                item = self._mailbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if item is None:
                continue
            if item.reply is not None:
                item.reply.fail(ActorStopped(self._name))
            else:
                dropped += 1
        if self._in_flight is not None:
            self._in_flight.fail(ActorStopped(self._name, "stopped while handling the message"))
            self._in_flight = None
        self._mailbox.close()
        self._stopped.set()
        if dropped:
            log.warning("actor.messages_dropped", actor=self._name, count=dropped)


def _new_ref(name: str, mailbox_size: int) -> ActorRef[Any]:
    """Make a ref (kernel only)."""
    return ActorRef(name, mailbox_size, _kernel=_KERNEL)


async def _stop_instance(actor: Actor[Any], *, cancelled: bool) -> None:
    """Run ``on_stop`` shielded and bounded by ``actor.stop_timeout``."""
    name = actor.ref.name
    with anyio.move_on_after(actor.stop_timeout, shield=True) as scope:
        if not cancelled:
            await actor.on_stop()
        else:
            try:
                await actor.on_stop()
            except Exception as exc:  # the cancellation must go on; this error has nowhere else to go
                log.error("actor.stop_failed", actor=name, error=repr(exc))
    if scope.cancelled_caught:
        log.warning("actor.stop_timeout", actor=name, timeout=actor.stop_timeout)


async def _run_instance(
    ref: ActorRef[M],
    factory: Callable[[], Actor[M]],
    ready: Callable[[], None],
) -> None:
    """Run one actor instance on ``ref`` until it exits (returns) or crashes (raises).

    ``ready`` is called once ``on_start`` returned.
    """
    actor = factory()
    actor.ref = ref
    ref._exit_requested = False
    try:
        await actor.on_start()
    except Exception as exc:
        await actor.on_failure(exc, None)
        raise
    ready()
    mailbox = ref._mailbox
    try:
        while not ref._exit_requested:
            try:
                if actor.receive_deadline == math.inf:
                    item = await mailbox.receive()
                else:
                    item = None
                    with anyio.CancelScope(deadline=actor.receive_deadline) as timer:
                        item = await mailbox.receive()
                    if timer.cancelled_caught and item is None:
                        try:
                            await actor.on_timeout()
                        except Exception as exc:
                            await actor.on_failure(exc, None)
                            raise
                        continue
            except anyio.EndOfStream:
                break  # intake closed and queue drained: graceful stop
            if item is None:
                continue
            if item.reply is None:
                try:
                    await actor.on_receive(item.message)
                except Exception as exc:
                    await actor.on_failure(exc, item.message)
                    raise
            else:
                ref._in_flight = item.reply
                try:
                    result = await actor.on_receive(item.message)
                except Exception as exc:
                    item.reply.fail(exc)
                else:
                    if not item.later:
                        item.reply.resolve(result)
                ref._in_flight = None
    except anyio.get_cancelled_exc_class():
        await _stop_instance(actor, cancelled=True)
        raise
    await _stop_instance(actor, cancelled=False)


async def _run_unsupervised(
    ref: ActorRef[M],
    factory: Callable[[], Actor[M]],
    *,
    task_status: TaskStatus[ActorRef[M]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await _run_instance(ref, factory, lambda: task_status.started(ref))
    finally:
        ref._finish()


async def spawn(
    task_group: TaskGroup,
    factory: Callable[[], Actor[M]],
    *,
    name: str,
    mailbox_size: int = 1000,
) -> ActorRef[M]:
    """Start an actor without a supervisor in ``task_group`` and return its ref once ``on_start`` returned.

    Nothing restarts it: when it stops or crashes it stops for good, and a
    crash propagates out of ``task_group`` (cancelling its other tasks).

    :raises Exception: whatever ``on_start`` raised.
    """
    ref: ActorRef[M] = _new_ref(name, mailbox_size)
    try:
        started: ActorRef[M] = await task_group.start(_run_unsupervised, ref, factory, name=f"actor:{name}")
    except BaseException:
        ref._finish()
        raise
    return started
