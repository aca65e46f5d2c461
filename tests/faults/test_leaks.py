"""Timeouts and cancellations leave nothing behind: no connection beyond the pool, no task, no waiter, no
row of the shared wait-for graph."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, InvalidOperation, ReplyTimeout, WaitTimeout
from agent_messaging._app import internals
from tests._helpers import eventually

pytestmark = pytest.mark.anyio

ROUNDS = 30


async def test_timeouts_and_cancellations_leak_no_connection_no_task_no_waiter(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=6, poll_interval=0.05, connect_timeout=10, shutdown_grace=0.5)
    am = AgentMessaging[Any](config)

    @am.register_handler("slow")
    async def slow(message: Any, ctx: Any) -> Any:
        await anyio.sleep_forever()  # its callers time out or are cancelled

    @am.register_handler("caller")
    async def caller(message: Any, ctx: Any) -> Any:  # a call made inside a handler records a wait-for edge
        with anyio.move_on_after(0.01):
            await am.conversation.send_and_wait("caller", "nobody", {"from": "handler"}, timeout=5)
        return None

    async with am:
        await am.register_organization("leaks", "Leaks", exist_ok=True)
        for name in ("sender", "nobody", "slow", "caller", "chair", "guest"):
            await am.register_agent(name, "leaks", name, exist_ok=True)
        parts = internals(am)
        db = parts.database
        meeting = await am.meeting.create_meeting("chair", ["guest"])

        async def connections() -> int:
            sql = (  # client connections (an autovacuum worker on this database is not one of ours)
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend'"
            )
            return int(await db.fetch_val(sql))

        async def one_round() -> None:
            with pytest.raises(ReplyTimeout):
                await am.conversation.send_and_wait("sender", "nobody", {"n": 1}, timeout=0.01)
            with anyio.move_on_after(0.01):
                await am.conversation.send_and_wait("sender", "slow", {"n": 2}, timeout=5)
            with pytest.raises(WaitTimeout):
                await am.conversation.wait_for_message("sender", timeout=0.01)
            with anyio.move_on_after(0.01), contextlib.suppress(InvalidOperation):  # a newer attend takes over
                await am.meeting.attend_meeting("guest", meeting)
            await am.one_way.send("sender", "caller", {"n": 3})

        await one_round()  # warm up: the pool, the watches and the actors exist now
        await anyio.sleep(0.2)
        tasks_before = len(anyio.get_running_tasks())
        async with anyio.create_task_group() as tg:
            for _ in range(ROUNDS):
                tg.start_soon(one_round)
        # idle watches end at their next wake-up, at worst the sweep
        await eventually(lambda: len(anyio.get_running_tasks()) <= tasks_before + 2, 10)
        assert await connections() <= config.pool_size
        await eventually(lambda: parts.calls.by_id == {})  # the last handler calls end in a moment

        async def no_waits() -> bool:
            return int(await db.fetch_val("SELECT count(*) FROM call_waits")) == 0

        await eventually(no_waits, 10)
