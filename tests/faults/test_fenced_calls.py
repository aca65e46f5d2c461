"""A handler fenced while it waits in a call of its own, through a database outage: its message is not
answered with an error (it stays unhandled and is handled again once the runtime is back)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from tests._helpers import eventually
from tests.faults.conftest import OwnServer

pytestmark = pytest.mark.anyio


async def test_a_handler_fenced_inside_a_call_leaves_its_caller_waiting_for_the_real_answer(
    own_server: OwnServer,
) -> None:
    dsn = await anyio.to_thread.run_sync(own_server.database)
    config = Config(
        dsn=dsn, pool_size=5, poll_interval=0.2, connect_timeout=10, ownership_lease=1.0, persistence_timeout=60
    )
    am = AgentMessaging[Any](config)
    release = anyio.Event()
    attempts: list[int] = []

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        answer = await am.conversation.send_and_wait("bob", "carol", "q", timeout=60)
        return f"ok:{answer}"

    @am.register_handler("carol")
    async def carol(message: Any, ctx: Any) -> Any:
        await release.wait()
        return "c"

    async with am:
        await am.register_organization("acme", "Acme")
        for name in ("alice", "bob", "carol"):
            await am.register_agent(name, "acme", name)
        parts = internals(am)
        await eventually(lambda: "bob" in parts.host.hosted and "carol" in parts.host.hosted)
        got: dict[str, Any] = {}

        async def alice() -> None:
            try:
                got["answer"] = await am.conversation.send_and_wait("alice", "bob", "hi", timeout=60)
            except Exception as exc:
                got["error"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(alice)
            await eventually(lambda: len(attempts) == 1)
            await anyio.sleep(0.3)  # bob waits in its call to carol
            await anyio.to_thread.run_sync(own_server.outage, 2.0)
            await eventually(lambda: parts.services.presence.outages >= 1 and parts.services.presence.held, 30)
            release.set()
            await eventually(lambda: "answer" in got or "error" in got, 30)
        assert got.get("answer") == "ok:c", got
