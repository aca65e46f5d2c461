"""News from other processes and in-process wake-ups: signals, the LISTEN connection and the periodic sweep.

:class:`Signals` are in-memory events keyed by strings (an agent id,
``"meeting:<id>"``); a waiter takes the key's event, checks the database, and
waits on the event. The writer sends at most one NOTIFY per committed batch,
its payload ``<runtime id>|<key>,<key>...`` (or ``*``). :class:`News` keeps one
LISTEN connection per runtime: it ignores its own runtime's notifications
(those were already handled in memory), fires the keys (each also as
``remote:<key>``, a key that only news from elsewhere fires) and hands them to
its subscribers (the agent host pokes agents that have news). Because a NOTIFY
can be lost, the sweep wakes every waiter and subscriber each
``poll_interval`` seconds so they re-check the database; and a LISTEN
connection that broke is opened again (see :class:`News`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .._log import get_logger
from ..persistence.database import Database
from ..persistence.writer import NOTIFY_CHANNEL

__all__ = ["News", "Signals", "Subscriber", "remote_key"]

log = get_logger("agent_messaging.listener")

#: Called with the keys a NOTIFY from another runtime named, or ``None`` for "anything may have changed"
#: (a ``*`` NOTIFY, or the sweep). Must not block: start a task for real work.
Subscriber = Callable[[list[str] | None], None]


def remote_key(key: str | uuid.UUID) -> str:
    """The signal key fired only for news from other processes (NOTIFY) and by the sweep."""
    return f"remote:{key}"


class Signals:
    """In-process wake-ups: a waiter on a key is woken when someone :meth:`fire` s that key."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self._any: dict[str, list[anyio.Event]] = {}  # the events of waits on several keys

    def event(self, key: str, *more: str) -> anyio.Event:
        """The event the next :meth:`fire` of ``key`` (or of any of ``more``) sets (wait on it after checking
        the database)."""
        if more:
            event = anyio.Event()
            for k in (key, *more):
                self._any.setdefault(k, []).append(event)
            return event
        found = self._events.get(key)
        if found is None:
            found = self._events[key] = anyio.Event()
        return found

    def fire(self, keys: Iterable[str]) -> None:
        """Wake everyone waiting on any of ``keys``."""
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()
            if self._any:
                for other in self._any.pop(key, ()):
                    other.set()

    def fire_all(self) -> None:
        """Wake every waiter (a NOTIFY said '*', or the poll period passed)."""
        events, self._events = self._events, {}
        waits, self._any = self._any, {}
        for event in events.values():
            event.set()
        for listed in waits.values():
            for event in listed:
                event.set()


class News:
    """The runtime's ears: the LISTEN connection, the periodic sweep and their subscribers.

    The LISTEN connection is checked every ``check_interval`` seconds (and at once after :meth:`renew`); when
    it broke (a database restart, a dropped connection) it is opened again with backoff, and every waiter and
    subscriber is woken to catch up on what was sent meanwhile.
    """

    def __init__(
        self,
        db: Database,
        signals: Signals,
        runtime_id: str,
        *,
        notify: bool,
        poll_interval: float,
        check_interval: float = 0.5,
    ) -> None:
        self.db = db
        self.signals = signals
        self.runtime_id = runtime_id
        self.notify = notify
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.reconnects = 0
        """How many times the LISTEN connection was opened again."""
        self._subscribers: list[Subscriber] = []
        self._renew = anyio.Event()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every foreign NOTIFY and every sweep from now on."""
        self._subscribers.append(subscriber)

    def renew(self) -> None:
        """Check the LISTEN connection now (the runtime has just reconnected to the database)."""
        self._renew.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """LISTEN (if ``notify``) and sweep until cancelled."""
        async with anyio.create_task_group() as tg:
            if self.notify:
                await tg.start(self._listen)
            tg.start_soon(self._sweep)
            task_status.started()

    def _deliver(self, payload: str) -> None:
        body = payload.partition("|")[2]
        keys = None if body == "*" else [k for k in body.split(",") if k]
        if keys is None:
            self.signals.fire_all()
        else:
            self.signals.fire([*keys, *map(remote_key, keys)])
        for subscriber in self._subscribers:
            subscriber(keys)

    def _wake_all(self) -> None:
        self.signals.fire_all()
        for subscriber in self._subscribers:
            subscriber(None)

    async def _start_listener(self) -> Any:
        db = self.db
        own = f"{self.runtime_id}|"

        async def on_notify(_conn: Any, payload: str, _channel: str, _pid: int) -> None:
            if not payload.startswith(own):  # this runtime's own news woke its waiters already
                db.call_soon_in_caller(lambda: self._deliver(payload))

        async def start() -> Any:
            listener = db.pool.listener()
            await listener.add_callback(NOTIFY_CHANNEL, on_notify)
            await listener.startup()
            listener.listen()
            return listener

        return await db.run_on_loop(start)

    async def _stop_listener(self, listener: Any) -> None:
        async def stop() -> None:
            listener.abort_listen()
            await listener.shutdown()

        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await self.db.run_on_loop(stop)
            except Exception as exc:  # a broken connection may refuse a clean shutdown: it is gone anyway
                log.info("listener.stop_failed", error=repr(exc))

    async def _listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        listener = await self._start_listener()
        try:
            task_status.started()
            while True:
                with anyio.move_on_after(self.check_interval):
                    await self._renew.wait()
                if self._renew.is_set():
                    self._renew = anyio.Event()
                if await self.db.answers(listener.connection):
                    continue
                log.warning("listener.lost", action="reconnecting; wake-ups fall back to the sweep meanwhile")
                old, listener = listener, None
                await self._stop_listener(old)
                listener = await self._reopen()
                self.reconnects += 1
                self._wake_all()  # what was notified while nobody listened
                log.warning("listener.restored")
        finally:
            if listener is not None:
                await self._stop_listener(listener)

    async def _reopen(self) -> Any:
        delay = 0.05
        while True:
            try:
                return await self._start_listener()
            except Exception as exc:
                log.info("listener.reconnect_failed", error=repr(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _sweep(self) -> None:
        while True:
            await anyio.sleep(self.poll_interval)
            self._wake_all()
