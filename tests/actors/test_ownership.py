"""Several runtimes on one database: each hosted agent is owned by exactly one of them."""

from __future__ import annotations

from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config


def _runtime(dsn: str, seen: list[tuple[str, Any]], tag: str) -> AgentMessaging[Any]:
    am = AgentMessaging[Any](Config(dsn=dsn, pool_size=3, poll_interval=0.1, connect_timeout=5))

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> None:
        seen.append((tag, message))

    return am


async def _until(predicate: Any, limit: float = 10) -> None:
    """Wait for runtime-internal state that exposes no event (hosting happens in the runtime's own tasks)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_one_owner_and_messages_reach_it_from_another_runtime(dsn: str) -> None:
    seen: list[tuple[str, Any]] = []
    async with _runtime(dsn, seen, "first") as first:
        await first.register_organization("acme", "Acme")
        await first.register_agent("alice", "acme", "Alice")
        await first.register_agent("bob", "acme", "Bob")
        await _until(lambda: "bob" in first.one_way.host_runtime.hosted)
        async with _runtime(dsn, seen, "second") as second:
            assert "bob" not in second.one_way.host_runtime.hosted
            assert "bob" in second.one_way.host_runtime.standby
            await second.one_way.send("alice", "bob", "via second")
            await _until(lambda: len(seen) == 1)
            assert seen == [("first", "via second")]
            rows = await second.database.fetch("SELECT runtime_id FROM agent_hosts")
            assert [r["runtime_id"] for r in rows] == [first.one_way.runtime_id]


async def test_another_runtime_takes_over_when_the_owner_closes(dsn: str) -> None:
    seen: list[tuple[str, Any]] = []
    owner_ready, owner_stop, owner_closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def run_owner() -> None:
        async with _runtime(dsn, seen, "owner") as owner:
            await owner.register_organization("acme", "Acme")
            await owner.register_agent("alice", "acme", "Alice")
            await owner.register_agent("bob", "acme", "Bob")
            await _until(lambda: "bob" in owner.one_way.host_runtime.hosted)
            owner_ready.set()
            await owner_stop.wait()
        owner_closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_owner)
        await owner_ready.wait()
        async with _runtime(dsn, seen, "heir") as heir:
            await anyio.sleep(0.3)
            assert "bob" not in heir.one_way.host_runtime.hosted  # the owner lives
            owner_stop.set()
            await owner_closed.wait()
            await _until(lambda: "bob" in heir.one_way.host_runtime.hosted)
            await heir.one_way.send("alice", "bob", "after takeover")
            await _until(lambda: ("heir", "after takeover") in seen)
        assert ("owner", "after takeover") not in seen
