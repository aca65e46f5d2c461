"""The persistence actor: group commit, per-sender order, dropped connections, outages, bad units."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.errors import PersistenceUnavailable
from agent_messaging.persistence.database import Database
from agent_messaging.persistence.store import messages
from agent_messaging.persistence.writer import Write, Writer
from tests.conftest import admin

TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-messaging' "
    "AND datname = current_database() AND pid <> pg_backend_pid()"
)


@dataclass(frozen=True)
class Ids:
    """Internal ids of the organization and agents made for a test."""

    organization: uuid.UUID
    agents: dict[str, uuid.UUID]


async def make_agents(config: Config, *names: str) -> Ids:
    """Register organization 'acme' and ``names`` through a short-lived runtime."""
    async with AgentMessaging[Any](config) as am:
        org = await am.register_organization("acme", "Acme")
        agents = {name: (await am.register_agent(name, "acme", name.title())).id for name in names}
    return Ids(org.id, agents)


def message_row(ids: Ids, sender: str, recipient: str | uuid.UUID, payload: Any) -> tuple[Any, ...]:
    """A ``message.insert`` row (columns in the statement's order)."""
    recipient_id = recipient if isinstance(recipient, uuid.UUID) else ids.agents[recipient]
    return (
        uuid.uuid4(),
        ids.organization,
        "one_way",
        ids.agents[sender],
        recipient_id,
        None,
        None,
        json.dumps(payload),
        "{}",
        None,
    )


@asynccontextmanager
async def running_writer(dsn: str, **options: Any) -> AsyncIterator[Writer]:
    """A ``Writer`` on its own ``Database``, run in a task group, flushed and closed on exit."""
    db = Database(dsn, pool_size=4, connect_timeout=5)
    await db.open()
    try:
        writer = Writer(db, **options)
        async with anyio.create_task_group() as tg:
            await tg.start(writer.run)
            try:
                yield writer
            finally:
                writer.close()
    finally:
        await db.aclose()


def database_name(dsn: str) -> str:
    """The database a DSN names (URL or key=value form)."""
    if "://" in dsn:
        return urlsplit(dsn).path.lstrip("/")
    return next(w for w in dsn.split() if w.startswith("dbname=")).split("=", 1)[1]


def message_ids(dsn: str, where: str = "TRUE") -> list[uuid.UUID]:
    """Ids of the committed messages matching ``where``, in commit (seq) order."""
    rows = admin(dsn, f"SELECT id FROM messages WHERE {where} ORDER BY seq")
    return [uuid.UUID(str(r["id"])) for r in rows]


async def read_ids(dsn: str, where: str = "TRUE") -> list[uuid.UUID]:
    """:func:`message_ids` without blocking the event loop."""
    return await anyio.to_thread.run_sync(message_ids, dsn, where)


async def test_concurrent_writers_share_few_transactions(config: Config) -> None:
    ids = await make_agents(config, "alice", "bob")
    rows = [message_row(ids, "alice", "bob", {"i": i}) for i in range(500)]
    async with running_writer(config.dsn_value() or "") as writer:

        async def one(row: tuple[Any, ...]) -> None:
            await writer.write([Write(messages.INSERT, row)])

        async with anyio.create_task_group() as tg:
            for row in rows:
                tg.start_soon(one, row)
        stats = writer.statistics()
    assert stats.units == 500
    assert stats.rows == 500
    assert stats.failures == 0
    assert stats.transactions < 100, stats  # group commit: far fewer commits than writers
    assert sorted(await read_ids(config.dsn_value() or "")) == sorted(row[0] for row in rows)


async def test_concurrent_sends_share_few_transactions(am: AgentMessaging[Any]) -> None:
    await am.register_organization("acme", "Acme")
    for name in ("alice", "bob", "carol"):
        await am.register_agent(name, "acme", name.title())
    await am.one_way.send("alice", ["bob", "carol"], "warm-up")  # the directory caches the agents
    before = internals(am).services.writer.statistics()
    acknowledged: list[uuid.UUID] = []

    async def one(i: int) -> None:
        acknowledged.extend(await am.one_way.send("alice", "bob" if i % 2 else "carol", {"i": i}))

    async with anyio.create_task_group() as tg:
        for i in range(500):
            tg.start_soon(one, i)
    after = internals(am).services.writer.statistics()
    assert after.units - before.units == 500
    assert after.transactions - before.transactions < 250, (before, after)
    assert len(set(acknowledged)) == 500
    rows = await internals(am).database.fetch("SELECT id FROM messages WHERE payload <> '\"warm-up\"'::jsonb")
    assert {uuid.UUID(str(r["id"])) for r in rows} == set(acknowledged)


async def test_closing_while_the_writer_lingers_commits_the_gathered_write(config: Config) -> None:
    """close() while the writer waits (lingers) for more units: what it holds is committed, run() returns cleanly."""
    ids = await make_agents(config, "alice", "bob")
    dsn = config.dsn_value() or ""
    first = [message_row(ids, "alice", "bob", {"i": i}) for i in range(2)]
    last = message_row(ids, "alice", "bob", {"i": 2})
    async with running_writer(dsn, connections=1, linger=5.0) as writer:
        async with anyio.create_task_group() as tg:  # two units in one batch: the next batch lingers
            for row in first:
                tg.start_soon(writer.write, [Write(messages.INSERT, row)])
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.write, [Write(messages.INSERT, last)])
                await anyio.sleep(0.2)  # the writer holds `last` and lingers for more
                writer.close()
    assert sorted(await read_ids(dsn)) == sorted(row[0] for row in [*first, last])


async def test_one_senders_sequential_writes_keep_their_order(config: Config) -> None:
    senders = ["s0", "s1", "s2", "s3", "s4"]
    ids = await make_agents(config, *senders, "bob")
    dsn = config.dsn_value() or ""
    written: dict[str, list[uuid.UUID]] = {s: [] for s in senders}
    async with running_writer(dsn, connections=2) as writer:

        async def sender(name: str) -> None:
            for i in range(40):
                row = message_row(ids, name, "bob", {"i": i})
                await writer.write([Write(messages.INSERT, row)])
                written[name].append(row[0])

        async with anyio.create_task_group() as tg:
            for name in senders:
                tg.start_soon(sender, name)
    for name in senders:
        committed = await read_ids(dsn, f"sender_id = '{ids.agents[name]}'")
        assert committed == written[name], f"{name}'s messages were committed out of order"


async def test_terminated_connections_lose_and_duplicate_nothing(am: AgentMessaging[Any], config: Config) -> None:
    await am.register_organization("acme", "Acme")
    for name in ("alice", "bob", "carol", "dave"):
        await am.register_agent(name, "acme", name.title())
    await am.one_way.send("alice", ["bob", "carol", "dave"], "warm-up")
    dsn = config.dsn_value() or ""
    acknowledged: list[uuid.UUID] = []
    errors: list[BaseException] = []
    stop = anyio.Event()
    recipients = ["bob", "carol", "dave"]
    before = internals(am).services.writer.statistics()

    async def sender(i: int) -> None:
        n = 0
        while not stop.is_set() or n < 3:
            try:
                acknowledged.extend(await am.one_way.send("alice", recipients[(i + n) % 3], {"i": i, "n": n}))
            except Exception as exc:
                errors.append(exc)
            n += 1

    killed = 0
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(sender, i)
        for _ in range(4):
            await anyio.sleep(0.05)
            killed += len(await anyio.to_thread.run_sync(admin, dsn, TERMINATE))
        await anyio.sleep(0.05)
        stop.set()
    after = internals(am).services.writer.statistics()

    assert killed >= 1
    assert errors == []
    assert after.retries > before.retries, "no batch was interrupted; the test did not exercise a retry"
    committed = await read_ids(dsn, "payload <> '\"warm-up\"'::jsonb")
    assert len(committed) == len(set(committed))
    assert len(acknowledged) == len(set(acknowledged))
    assert set(committed) == set(acknowledged)  # every acknowledged send is there, once; nothing else
    # the runtime still works after the storm
    [again] = await am.one_way.send("alice", "bob", "after")
    assert again in await read_ids(dsn)


async def test_database_down_longer_than_the_timeout(dsn: str, server_dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, persistence_timeout=1)
    name = database_name(dsn)
    async with AgentMessaging[Any](config) as am:
        await am.register_organization("acme", "Acme")
        for agent in ("alice", "bob", "carol"):
            await am.register_agent(agent, "acme", agent.title())
        first = await am.one_way.send("alice", ["bob", "carol"], "before")  # also caches the agents
        down = [f"ALTER DATABASE {name} ALLOW_CONNECTIONS false", TERMINATE.replace("current_database()", f"'{name}'")]
        await anyio.to_thread.run_sync(lambda: admin(server_dsn, *down))
        try:
            results: list[BaseException | list[uuid.UUID]] = []

            async def send(i: int) -> None:
                try:
                    results.append(await am.one_way.send("alice", ["bob", "carol"], {"during": i}))
                except PersistenceUnavailable as exc:
                    results.append(exc)

            started = anyio.current_time()
            with anyio.fail_after(15):
                async with anyio.create_task_group() as tg:
                    for i in range(5):
                        tg.start_soon(send, i)
            assert len(results) == 5
            assert all(isinstance(r, PersistenceUnavailable) for r in results), results
            # the writer kept retrying until the timeout before giving up (not a first-failure error)
            assert anyio.current_time() - started >= 1
            assert internals(am).services.writer.statistics().retries > 0
        finally:
            await anyio.to_thread.run_sync(lambda: admin(server_dsn, f"ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        assert await read_ids(dsn) == first  # nothing of the failed sends was written, not even half
        # once the database is back, the same runtime writes again
        with anyio.fail_after(10):
            while True:
                try:
                    later = await am.one_way.send("alice", ["bob", "carol"], "after")
                    break
                except PersistenceUnavailable:
                    await anyio.sleep(0.1)
        assert await read_ids(dsn) == [*first, *later]


async def test_an_invalid_unit_fails_alone(config: Config) -> None:
    ids = await make_agents(config, "alice", "bob")
    dsn = config.dsn_value() or ""
    valid = [[Write(messages.INSERT, message_row(ids, "alice", "bob", {"i": i}))] for i in range(30)]
    # a unit of two rows, one of which names a recipient that does not exist (foreign key violation)
    bad = [
        Write(messages.INSERT, message_row(ids, "alice", "bob", "fine on its own")),
        Write(messages.INSERT, message_row(ids, "alice", uuid.uuid4(), "orphan")),
    ]
    outcome: dict[int, BaseException | None] = {}
    async with running_writer(dsn, linger=0.005) as writer:

        async def one(key: int, unit: list[Write]) -> None:
            try:
                await writer.write(unit)
                outcome[key] = None
            except Exception as exc:
                outcome[key] = exc

        async with anyio.create_task_group() as tg:
            for key, unit in enumerate(valid[:15]):
                tg.start_soon(one, key, unit)
            tg.start_soon(one, -1, bad)
            for key, unit in enumerate(valid[15:], 15):
                tg.start_soon(one, key, unit)
        stats = writer.statistics()
        # the writer goes on working after a failed unit
        await writer.write([Write(messages.INSERT, message_row(ids, "alice", "bob", "later"))])

    error = outcome.pop(-1)
    assert error is not None
    assert not isinstance(error, PersistenceUnavailable)
    assert outcome == dict.fromkeys(range(30))
    assert stats.failures == 1
    committed = set(await read_ids(dsn))
    assert {unit[0].row[0] for unit in valid} <= committed
    assert not {w.row[0] for w in bad} & committed  # the bad unit is all-or-none: its valid row is not there
    assert len(committed) == 31


async def test_unknown_write_kind_is_refused(config: Config) -> None:
    async with running_writer(config.dsn_value() or "") as writer:
        with pytest.raises(ValueError, match="unknown write kind"):
            await writer.write([Write("no.such.kind", ())])  # type: ignore[arg-type]
        assert writer.statistics().units == 0


async def test_two_updates_of_one_message_in_one_batch_both_land(config: Config) -> None:
    # PostgreSQL applies only one of two statements' updates of one row in one batch, silently: a failed attempt's
    # count and the next attempt's handled mark (both bookkeeping, both waiting for the same batch), or a
    # dead-lettering and a late count, must both land
    ids = await make_agents(config, "alice", "bob")
    dsn = config.dsn_value() or ""
    handled, dead = (message_row(ids, "alice", "bob", name) for name in ("handled", "dead"))
    async with running_writer(dsn, connections=1) as writer:  # one connection: one batch takes them all
        await writer.write([Write(messages.INSERT, handled), Write(messages.INSERT, dead)])
        writer.submit_nowait([Write(messages.ATTEMPT, (handled[0], 1))])
        writer.submit_nowait([Write(messages.HANDLED, (handled[0], 2)), Write(messages.ATTEMPT, (dead[0], 2))])
        await writer.write([Write(messages.DEAD, (dead[0], 3))])
    sql = "SELECT payload #>> '{}' AS name, handled_at, read_at, dead_at, attempts FROM messages"
    rows = await anyio.to_thread.run_sync(admin, dsn, sql)
    state = {r["name"]: (r["handled_at"] is not None, r["read_at"] is not None, r["dead_at"] is not None) for r in rows}
    assert state == {"handled": (True, True, False), "dead": (False, False, True)}
    assert {r["name"]: r["attempts"] for r in rows} == {"handled": 2, "dead": 3}
