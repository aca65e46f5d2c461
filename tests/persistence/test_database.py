"""Database: the psqlpy pool on asyncio and trio, transactions, cancellation safety, unreachable servers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import psqlpy
import pytest
import structlog
from psqlpy import exceptions as pg_exc

from agent_messaging import AgentMessaging, Config, PersistenceUnavailable
from agent_messaging.persistence.database import Database
from tests.conftest import admin

pytestmark = pytest.mark.anyio  # parametrized async tests need the marker at collection time

POOL_SIZE = 4
SECRET = "sekrit"


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(dsn, pool_size=POOL_SIZE, connect_timeout=5)
    await database.open()
    try:
        yield database
    finally:
        await database.aclose()


async def admin_query(dsn: str, sql: str) -> list[dict[str, Any]]:
    """``sql`` on a separate short-lived connection (in a worker thread, so it works from both backends)."""
    return await anyio.to_thread.run_sync(admin, dsn, sql)


async def our_connections(dsn: str) -> list[dict[str, Any]]:
    """The runtime's server connections to this test's database (the admin connection excluded)."""
    return await admin_query(
        dsn,
        "SELECT pid, state FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'agent-messaging' AND pid <> pg_backend_pid()",
    )


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -------------------------------------------------------------------- queries


async def test_fetch_fetch_row_fetch_val_execute_run(db: Database) -> None:
    await db.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
    assert await db.fetch("SELECT * FROM items") == []
    assert await db.fetch_row("SELECT * FROM items") is None
    assert await db.fetch_val("SELECT name FROM items") is None

    for i, name in [(2, "two"), (1, "one"), (3, "three")]:
        await db.execute("INSERT INTO items (id, name) VALUES ($1, $2)", [i, name])

    assert await db.fetch("SELECT id, name FROM items ORDER BY id") == [
        {"id": 1, "name": "one"},
        {"id": 2, "name": "two"},
        {"id": 3, "name": "three"},
    ]
    assert await db.fetch_row("SELECT id, name FROM items WHERE id = $1", [2]) == {"id": 2, "name": "two"}
    assert await db.fetch_val("SELECT name FROM items WHERE id = $1", (3,)) == "three"
    assert await db.fetch_val("SELECT count(*) FROM items") == 3
    assert await db.fetch_val("SELECT NULL::text") is None

    async def two_statements(conn: psqlpy.Connection) -> tuple[int, int]:
        first = (await conn.execute("SELECT pg_backend_pid() AS pid")).result()[0]["pid"]
        second = (await conn.execute("SELECT pg_backend_pid() AS pid")).result()[0]["pid"]
        return first, second

    first, second = await db.run(two_statements)
    assert first == second  # run() keeps one connection for the whole function


async def test_jsonb_round_trip(db: Database) -> None:
    await db.execute("CREATE TABLE docs (id int PRIMARY KEY, body jsonb NOT NULL)")
    document = {
        "text": "héllo wörld ✓ 🤖",
        "n": 42,
        "int32": 2**31 - 1,
        "negative": -(2**31),
        "f": 1.5,
        "yes": True,
        "nothing": None,
        "list": [1, "two", {"three": [3]}],
        "nested": {"deeper": {"deepest": []}},
        "quote'and\"backslash\\": "x",
    }
    await db.execute("INSERT INTO docs VALUES (1, $1), (2, $2)", [document, [1, {"a": None}, "z"]])
    assert await db.fetch_val("SELECT body FROM docs WHERE id = 1") == document
    assert await db.fetch_val("SELECT body FROM docs WHERE id = 2") == [1, {"a": None}, "z"]
    # stored as real jsonb, queryable by the server
    assert await db.fetch_val("SELECT body -> 'nested' -> 'deeper' ->> 'deepest' FROM docs WHERE id = 1") == "[]"
    assert await db.fetch_val("SELECT body ->> 'text' FROM docs WHERE id = 1") == document["text"]


async def test_transaction_commits_when_the_function_returns(db: Database, dsn: str) -> None:
    await db.execute("CREATE TABLE ledger (id int PRIMARY KEY)")

    async def body(tx: psqlpy.Transaction) -> str:
        await tx.execute("INSERT INTO ledger VALUES (1)")
        await tx.execute("INSERT INTO ledger VALUES (2)")
        return "done"

    assert await db.transaction(body) == "done"
    # visible to another session: committed
    assert await admin_query(dsn, "SELECT id FROM ledger ORDER BY id") == [{"id": 1}, {"id": 2}]


async def test_transaction_rolls_back_when_the_function_raises(db: Database, dsn: str) -> None:
    await db.execute("CREATE TABLE ledger (id int PRIMARY KEY)")

    async def body(tx: psqlpy.Transaction) -> None:
        await tx.execute("INSERT INTO ledger VALUES (1)")
        await tx.execute("INSERT INTO ledger VALUES (2)")
        raise ValueError("changed my mind")

    with pytest.raises(ValueError, match="changed my mind"):
        await db.transaction(body)
    assert await db.fetch_val("SELECT count(*) FROM ledger") == 0
    assert await admin_query(dsn, "SELECT count(*) AS n FROM ledger") == [{"n": 0}]
    # the connection went back clean: the pool still works and nothing is left open
    assert await db.fetch_val("SELECT 1") == 1
    assert all(row["state"] != "idle in transaction" for row in await our_connections(dsn))


async def test_failed_statement_rolls_back_and_is_not_persistence_unavailable(db: Database) -> None:
    await db.execute("CREATE TABLE ledger (id int PRIMARY KEY)")

    async def body(tx: psqlpy.Transaction) -> None:
        await tx.execute("INSERT INTO ledger VALUES (1)")
        await tx.execute("INSERT INTO ledger VALUES (1)")  # duplicate key

    with pytest.raises(pg_exc.Error, match="duplicate key") as caught:
        await db.transaction(body)
    assert not isinstance(caught.value, PersistenceUnavailable)  # a bad statement is not an unreachable server
    assert await db.fetch_val("SELECT count(*) FROM ledger") == 0

    with pytest.raises(pg_exc.Error, match="nonsense_fn") as caught:
        await db.fetch("SELECT nonsense_fn()")
    assert not isinstance(caught.value, PersistenceUnavailable)
    with pytest.raises(pg_exc.Error, match="closed_things") as caught:
        await db.fetch("SELECT * FROM closed_things")
    assert not isinstance(caught.value, PersistenceUnavailable)
    assert await db.fetch_val("SELECT 2") == 2


# --------------------------------------------------------------- cancellation


async def test_cancelled_queries_leak_no_connection_and_no_transaction(db: Database, dsn: str) -> None:
    await db.execute("CREATE TABLE marks (k int NOT NULL, part int NOT NULL)")
    finished: list[int] = []

    async def sleeper(i: int) -> None:
        await db.fetch_val("SELECT 1 FROM pg_sleep(0.2)")
        finished.append(i)

    async def writer(i: int) -> None:
        async def body(tx: psqlpy.Transaction) -> None:
            await tx.execute("INSERT INTO marks VALUES ($1, 1)", [i])
            await tx.execute("SELECT pg_sleep(0.2)")
            await tx.execute("INSERT INTO marks VALUES ($1, 2)", [i])

        await db.transaction(body)
        finished.append(i)

    with anyio.move_on_after(0.1) as scope:
        async with anyio.create_task_group() as tg:
            for i in range(3 * POOL_SIZE):
                tg.start_soon(writer if i % 2 else sleeper, i)

    assert scope.cancelled_caught
    assert finished == []  # every caller was cancelled, none saw a result

    rows = await our_connections(dsn)
    assert len(rows) <= POOL_SIZE
    states = [row["state"] for row in rows]
    assert "active" not in states
    assert "idle in transaction" not in states
    assert "idle in transaction (aborted)" not in states

    # each transaction is all or nothing
    parts = await admin_query(dsn, "SELECT k, count(*) AS n FROM marks GROUP BY k")
    assert all(row["n"] == 2 for row in parts), parts

    # the pool is still fully usable
    results: list[int] = []

    async def query(i: int) -> None:
        results.append(await db.fetch_val("SELECT $1::int", [i]))

    async with anyio.create_task_group() as tg:
        for i in range(4 * POOL_SIZE):
            tg.start_soon(query, i)
    assert sorted(results) == list(range(4 * POOL_SIZE))

    async def in_tx(tx: psqlpy.Transaction) -> int:
        await tx.execute("INSERT INTO marks VALUES (-1, 1)")
        return 1

    assert await db.transaction(in_tx) == 1
    rows = await our_connections(dsn)
    assert 1 <= len(rows) <= POOL_SIZE
    assert all(row["state"] == "idle" for row in rows)


async def test_cancel_one_caller_while_others_continue(db: Database, dsn: str) -> None:
    outcome: dict[str, Any] = {}

    async def victim() -> None:
        with anyio.move_on_after(0.05) as scope:
            await db.fetch_val("SELECT 1 FROM pg_sleep(0.3)")
            outcome["victim"] = "finished"
        outcome["victim_cancelled"] = scope.cancelled_caught

    async def survivor() -> None:
        outcome["survivor"] = await db.fetch_val("SELECT 'ok' FROM pg_sleep(0.1)")

    async with anyio.create_task_group() as tg:
        tg.start_soon(victim)
        tg.start_soon(survivor)

    assert outcome == {"victim_cancelled": True, "survivor": "ok"}
    assert all(row["state"] == "idle" for row in await our_connections(dsn))


async def test_queries_do_not_need_a_free_worker_thread(db: Database) -> None:
    """A waiting query holds no worker thread: queries run even when anyio's thread pool is exhausted."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    saved = limiter.total_tokens
    limiter.total_tokens = 1
    try:
        async with limiter:  # this task holds the only worker-thread token
            results: list[Any] = []

            async def query() -> None:
                results.append(await db.fetch_val("SELECT 'x' FROM pg_sleep(0.05)"))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    for _ in range(2 * POOL_SIZE):
                        tg.start_soon(query)
            assert results == ["x"] * (2 * POOL_SIZE)
    finally:
        limiter.total_tokens = saved


# ---------------------------------------------------------------- unreachable


@pytest.mark.parametrize("form", ["url", "key_value"])
async def test_unreachable_dsn_raises_persistence_unavailable_without_the_password(form: str) -> None:
    port = closed_port()
    if form == "url":
        dsn = f"postgresql://u:{SECRET}@127.0.0.1:{port}/db?connect_timeout=1"
    else:
        dsn = f"host=127.0.0.1 port={port} user=u password={SECRET} dbname=db connect_timeout=1"
    database = Database(dsn, pool_size=3, connect_timeout=0.5)
    assert SECRET not in repr(database)

    with (
        structlog.testing.capture_logs() as logs,
        anyio.fail_after(30),
        pytest.raises(PersistenceUnavailable) as caught,
    ):
        await database.open()

    exc = caught.value
    assert "127.0.0.1" in str(exc)
    assert exc.host is not None
    assert "127.0.0.1" in exc.host
    for shown in (str(exc), repr(exc), str(exc.__cause__), str(exc.__context__), repr(logs)):
        assert SECRET not in shown
    # a failed open leaves nothing usable behind
    with pytest.raises(PersistenceUnavailable):
        await database.fetch_val("SELECT 1")


async def test_runtime_on_an_unreachable_dsn_raises_persistence_unavailable() -> None:
    dsn = f"postgresql://u:{SECRET}@127.0.0.1:{closed_port()}/db"
    runtime = AgentMessaging[Any](Config(dsn=dsn, connect_timeout=0.5, pool_size=4))
    with (
        structlog.testing.capture_logs() as logs,
        anyio.fail_after(30),
        pytest.raises(PersistenceUnavailable) as caught,
    ):
        async with runtime:
            pytest.fail("the runtime opened on an unreachable database")
    assert "127.0.0.1" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(logs)


async def test_a_closed_database_raises_persistence_unavailable(dsn: str) -> None:
    database = Database(dsn, pool_size=3)
    with pytest.raises(PersistenceUnavailable, match="not open"):
        await database.fetch_val("SELECT 1")  # never opened

    await database.open()
    assert await database.fetch_val("SELECT 1") == 1
    await database.aclose()
    await database.aclose()  # closing twice is harmless

    async def body(tx: psqlpy.Transaction) -> None:
        await tx.execute("SELECT 1")

    with pytest.raises(PersistenceUnavailable):
        await database.fetch_val("SELECT 1")
    with pytest.raises(PersistenceUnavailable):
        await database.execute("SELECT 1")
    with pytest.raises(PersistenceUnavailable):
        await database.transaction(body)
    # the pool's connections leave the server (a backend exits shortly after its client hangs up;
    # the server offers no event for that, so look a few times)
    for _ in range(250):
        if not await our_connections(dsn):
            break
        await anyio.sleep(0.02)
    assert await our_connections(dsn) == []
