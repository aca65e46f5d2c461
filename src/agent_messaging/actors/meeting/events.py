"""Meeting event dispatch: handlers registered with ``am.on_meeting_event`` run outside the meeting actors.

Each handler gets its own worker task and its own bounded queue, so events
reach a handler in history order, a slow handler only delays itself, and a
handler that raises is logged and keeps receiving. The meeting actor never
waits: :meth:`EventDispatcher.publish` is synchronous and, when a handler's
queue is full, drops the event for that handler (counted and logged) rather
than stall the meeting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..._log import get_logger
from ...models import MeetingEvent
from ..registry import EventHandler, Registry

__all__ = ["DispatcherStatistics", "EventDispatcher"]

log = get_logger("agent_messaging.meeting")


_QUEUE_SIZE = 10_000  # events buffered per handler; a new event for a full queue is dropped


@dataclass(frozen=True)
class DispatcherStatistics:
    """Counters of the meeting event dispatcher."""

    delivered: int
    failed: int
    dropped: int
    handlers: int


class EventDispatcher:
    """Runs meeting event handlers, one worker task per handler. Start it with ``task_group.start(run)``."""

    def __init__(self, registry: Registry[Any]) -> None:
        self.registry = registry
        self._tg: TaskGroup | None = None
        self._queues: dict[EventHandler, MemoryObjectSendStream[MeetingEvent[Any]]] = {}
        self._delivered = self._failed = self._dropped = 0

    def statistics(self) -> DispatcherStatistics:
        """A snapshot of the dispatcher's counters."""
        return DispatcherStatistics(self._delivered, self._failed, self._dropped, len(self._queues))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the handler workers until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    task_status.started()
                    await anyio.sleep_forever()
                finally:
                    self._tg = None  # before the group closes: nothing starts in it while it does
        finally:
            for send in self._queues.values():
                send.close()
            self._queues.clear()

    def publish(self, events: list[MeetingEvent[Any]]) -> None:
        """Queue committed ``events`` for their handlers; never blocks."""
        if not self.registry.event_handlers or self._tg is None:
            return
        for event in events:
            for handler in self.registry.event_handlers_for(event.type):
                send = self._queues.get(handler)
                if send is None:
                    send, receive = anyio.create_memory_object_stream[MeetingEvent[Any]](_QUEUE_SIZE)
                    self._queues[handler] = send
                    self._tg.start_soon(self._work, handler, receive)
                try:
                    send.send_nowait(event)
                except anyio.WouldBlock:
                    self._dropped += 1
                    if self._dropped % 1000 == 1:
                        log.warning("meeting.event_dropped", handler=_name(handler), dropped=self._dropped)

    async def _work(self, handler: EventHandler, receive: MemoryObjectReceiveStream[MeetingEvent[Any]]) -> None:
        with receive:
            async for event in receive:
                try:
                    await handler(event)
                    self._delivered += 1
                except Exception:
                    self._failed += 1
                    log.exception(
                        "meeting.event_handler_failed",
                        handler=_name(handler),
                        meeting=str(event.meeting_id),
                        seq=event.seq,
                        type=event.type.value,
                    )


def _name(handler: Any) -> str:
    return str(getattr(handler, "__qualname__", None) or handler)
