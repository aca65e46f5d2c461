"""Conversations at scale: many concurrent calls, each matched to its own reply; connections stay bounded."""

from __future__ import annotations

import gc
import itertools
from typing import Any
from urllib.parse import urlsplit

import anyio

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.persistence.database import Database

AM = AgentMessaging[Any]


async def echo(message: Any, ctx: Any) -> Any:
    """Answer each call with what it asked and who answered."""
    return {"echo": message, "by": ctx.agent}


async def register(am: AM, names: list[str]) -> None:
    """The organization and its agents."""
    await am.register_organization("acme", "Acme")
    for name in names:
        await am.register_agent(name, "acme", name)


async def calls(am: AM, plan: list[tuple[str, str, int]], limit: float = 60) -> dict[int, Any]:
    """Run every (sender, recipient, n) call at once; the replies by n."""
    results: dict[int, Any] = {}

    async def call(sender: str, recipient: str, n: int) -> None:
        results[n] = await am.conversation.send_and_wait(sender, recipient, n, timeout=limit)

    with anyio.fail_after(limit):
        async with anyio.create_task_group() as tg:
            for sender, recipient, n in plan:
                tg.start_soon(call, sender, recipient, n)
    return results


async def test_200_concurrent_calls_on_one_pair(am: AM) -> None:
    await register(am, ["alice", "bob"])
    am.register_handler("bob")(echo)
    results = await calls(am, [("alice", "bob", n) for n in range(200)])
    assert results == {n: {"echo": n, "by": "bob"} for n in range(200)}
    rows = await internals(am).database.fetch(
        "SELECT count(*) AS n, count(DISTINCT conversation_id) AS sessions FROM messages WHERE kind = 'reply'"
    )
    assert rows == [{"n": 200, "sessions": 1}]
    assert await am.conversation.get_unread_messages("alice") == []


async def test_200_concurrent_calls_on_100_pairs(am: AM) -> None:
    senders = [f"s{i}" for i in range(100)]
    recipients = [f"r{i}" for i in range(10)]
    await register(am, senders + recipients)
    am.register_handler(*recipients)(echo)
    plan = [(senders[n % 100], recipients[n % 10], n) for n in range(200)]
    results = await calls(am, plan)
    assert results == {n: {"echo": n, "by": recipients[n % 10]} for n in range(200)}
    pairs = await internals(am).database.fetch("SELECT count(*) AS n FROM conversations WHERE status = 'active'")
    assert pairs == [{"n": len({(s, r) for s, r, _ in plan})}]


async def test_replies_by_reply_to_200_concurrent_waiters(am: AM) -> None:
    await register(am, ["alice", "bob"])
    results: dict[int, Any] = {}

    async def call(n: int) -> None:
        results[n] = await am.conversation.send_and_wait("alice", "bob", n, timeout=60)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(200):
                tg.start_soon(call, n)
            answered = 0
            while answered < 200:
                requests = await am.conversation.get_unread_messages("bob", limit=50)
                for request in requests:
                    await am.conversation.reply("bob", "alice", request.payload * 10, request_id=request.id)
                answered += len(requests)
                if not requests:
                    await anyio.sleep(0.01)
    assert results == {n: n * 10 for n in range(200)}


async def test_pool_of_10_with_1000_concurrent_calls(dsn: str, server_dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    monitor = Database(server_dsn, pool_size=2)
    await monitor.open()
    try:
        await _thousand_calls(dsn, name, monitor)
    finally:
        await monitor.aclose()


async def _thousand_calls(dsn: str, name: str, monitor: Database) -> None:
    async def connections() -> int:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'"
        return int(await monitor.fetch_val(sql, [name]))  # not autovacuum workers on this database

    baseline = await connections()
    config = Config(dsn=dsn, pool_size=10, connect_timeout=5, persistence_timeout=30)
    async with AgentMessaging[Any](config) as am:
        senders = [f"s{i}" for i in range(20)]
        recipients = [f"r{i}" for i in range(10)]
        await register(am, senders + recipients)
        am.register_handler(*recipients)(echo)
        plan = [(senders[n % 20], recipients[n % 10], n) for n in range(1000)]
        results = await calls(am, plan, limit=120)
        assert results == {n: {"echo": n, "by": recipients[n % 10]} for n in range(1000)}
        assert await connections() <= baseline + 10 + 2  # the pool, the LISTEN and the presence connections
        assert len(internals(am).calls.by_id) == 0
    with anyio.fail_after(10):
        for _ in itertools.count():
            gc.collect()  # a connection an unreachable object still holds closes at the next collection
            if await connections() <= baseline:
                break
            await anyio.sleep(0.05)
