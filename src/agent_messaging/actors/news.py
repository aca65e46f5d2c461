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
``poll_interval`` seconds so they re-check the database.
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

    def event(self, key: str) -> anyio.Event:
        """The event the next :meth:`fire` of ``key`` sets (wait on it after checking the database)."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        return event

    def fire(self, keys: Iterable[str]) -> None:
        """Wake everyone waiting on any of ``keys``."""
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def fire_all(self) -> None:
        """Wake every waiter (a NOTIFY said '*', or the poll period passed)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()


class News:
    """The runtime's ears: the LISTEN connection, the periodic sweep and their subscribers."""

    def __init__(self, db: Database, signals: Signals, runtime_id: str, *, notify: bool, poll_interval: float) -> None:
        self.db = db
        self.signals = signals
        self.runtime_id = runtime_id
        self.notify = notify
        self.poll_interval = poll_interval
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` for every foreign NOTIFY and every sweep from now on."""
        self._subscribers.append(subscriber)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """LISTEN (if ``notify``) and sweep until cancelled."""
        async with anyio.create_task_group() as tg:
            if self.notify:
                await tg.start(self._listen)
            tg.start_soon(self._sweep)
            task_status.started()

    def _deliver(self, payload: str) -> None:
        origin, _, body = payload.partition("|")
        if origin == self.runtime_id:
            return
        keys = None if body == "*" else [k for k in body.split(",") if k]
        if keys is None:
            self.signals.fire_all()
        else:
            self.signals.fire([*keys, *map(remote_key, keys)])
        for subscriber in self._subscribers:
            subscriber(keys)

    async def _listen(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        db = self.db

        async def on_notify(_conn: Any, payload: str, _channel: str, _pid: int) -> None:
            db.call_soon_in_caller(lambda: self._deliver(payload))

        async def start() -> Any:
            listener = db.pool.listener()
            await listener.add_callback(NOTIFY_CHANNEL, on_notify)
            await listener.startup()
            listener.listen()
            return listener

        async def stop(listener: Any) -> None:
            listener.abort_listen()
            await listener.shutdown()

        listener = await db.run_on_loop(start)
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await db.run_on_loop(stop, listener)

    async def _sweep(self) -> None:
        while True:
            await anyio.sleep(self.poll_interval)
            self.signals.fire_all()
            for subscriber in self._subscribers:
                subscriber(None)
