"""News from other processes: one LISTEN connection per runtime, plus a periodic sweep.

The writer sends at most one NOTIFY per committed batch, its payload
``<runtime id>|<key>,<key>...`` (or ``*``). The listener ignores its own
runtime's notifications (those were already handled in memory) and fires the
keys through :class:`~agent_messaging.runtime._services.Signals` (each also as
``remote:<key>``, a key that only news from elsewhere fires), and hands them
to the subscribers (the agent host pokes agents that have news). Because a
NOTIFY can be lost, :func:`run_sweeper` wakes every waiter each
``poll_interval`` seconds so they re-check the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..persistence.writer import NOTIFY_CHANNEL
from ._services import Services, remote_key

__all__ = ["run_listener", "run_sweeper"]

log = structlog.get_logger("agent_messaging.listener")
Subscriber = Callable[[list[str] | None], None]


async def run_listener(
    services: Services[Any],
    runtime_id: str,
    subscribers: list[Subscriber],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """LISTEN until cancelled; fire signals and subscribers for every foreign notification."""
    db = services.db

    def deliver(payload: str) -> None:
        origin, _, body = payload.partition("|")
        if origin == runtime_id:
            return
        keys = None if body == "*" else [k for k in body.split(",") if k]
        if keys is None:
            services.signals.fire_all()
        else:
            services.signals.fire([*keys, *map(remote_key, keys)])
        for subscriber in subscribers:
            subscriber(keys)

    async def on_notify(_conn: Any, payload: str, _channel: str, _pid: int) -> None:
        db.call_soon_in_caller(lambda: deliver(payload))

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


async def run_sweeper(
    services: Services[Any],
    subscribers: list[Subscriber],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Every ``poll_interval``: wake all waiters and subscribers to re-check (covers lost NOTIFYs)."""
    task_status.started()
    for _ in itertools.count():
        await anyio.sleep(services.config.poll_interval)
        services.signals.fire_all()
        for subscriber in subscribers:
            subscriber(None)
