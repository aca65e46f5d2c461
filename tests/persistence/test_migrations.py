"""Migrations: fresh database, re-runs, status, concurrent openers, changed files, failing files."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, ConfigurationError
from agent_messaging._app import internals
from agent_messaging.persistence.database import Database
from agent_messaging.persistence.migrations import (
    LEDGER,
    Migration,
    apply_migrations,
    available_migrations,
    migration_status,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def empty_dsn(fresh_database: Callable[[bool], str]) -> str:
    """A new database with no schema at all."""
    return fresh_database(False)


@pytest.fixture
async def empty_db(empty_dsn: str) -> AsyncIterator[Database]:
    database = Database(empty_dsn, pool_size=3, connect_timeout=5)
    await database.open()
    try:
        yield database
    finally:
        await database.aclose()


async def ledger(db: Database) -> list[dict[str, Any]]:
    return await db.fetch(f"SELECT version, name, checksum, applied_at FROM {LEDGER} ORDER BY version")


async def table_exists(db: Database, name: str) -> bool:
    return bool(await db.fetch_val("SELECT to_regclass($1) IS NOT NULL", [name]))


def test_shipped_migrations_are_numbered_from_0001() -> None:
    migrations = available_migrations()
    assert migrations[0].version == 1
    assert migrations[0].name == "initial"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    first = migrations[0]
    assert first.checksum == hashlib.sha256(first.sql.encode()).hexdigest()


async def test_fresh_database_gets_0001_and_a_rerun_is_a_no_op(empty_db: Database) -> None:
    assert not await table_exists(empty_db, "organizations")

    applied = await apply_migrations(empty_db)

    assert [m.version for m in applied] == [m.version for m in available_migrations()]
    rows = await ledger(empty_db)
    assert len(rows) == len(available_migrations())
    first = rows[0]
    assert first["version"] == 1
    assert first["name"] == "initial"
    assert first["checksum"] == available_migrations()[0].checksum
    assert isinstance(first["applied_at"], datetime)
    for table in ("organizations", "agents", "messages", "meetings"):
        assert await table_exists(empty_db, table), table

    assert await apply_migrations(empty_db) == []
    assert await ledger(empty_db) == rows


async def test_migration_status_before_and_after(empty_db: Database) -> None:
    before = await migration_status(empty_db)
    assert [(s.version, s.name) for s in before] == [(m.version, m.name) for m in available_migrations()]
    assert all(not s.applied and s.applied_at is None for s in before)
    assert not await table_exists(empty_db, LEDGER)  # looking does not create anything

    await apply_migrations(empty_db)

    after = await migration_status(empty_db)
    assert [(s.version, s.name) for s in after] == [(s.version, s.name) for s in before]
    assert all(s.applied and isinstance(s.applied_at, datetime) for s in after)


async def test_concurrent_runtimes_apply_each_migration_once(empty_dsn: str) -> None:
    opened: list[int] = []

    async def open_runtime(i: int) -> None:
        async with AgentMessaging[Any](Config(dsn=empty_dsn, pool_size=4, connect_timeout=5)) as am:
            await am.register_organization(f"org-{i}", f"Org {i}")
            opened.append(i)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(open_runtime, i)

    assert sorted(opened) == list(range(5))
    database = Database(empty_dsn, pool_size=3)
    await database.open()
    try:
        rows = await ledger(database)
        assert [r["version"] for r in rows] == [m.version for m in available_migrations()]
        assert await database.fetch_val("SELECT count(*) FROM organizations") == 5
    finally:
        await database.aclose()


async def test_concurrent_apply_migrations_on_separate_pools(empty_dsn: str) -> None:
    results: list[list[Migration]] = []

    async def migrate() -> None:
        database = Database(empty_dsn, pool_size=3)
        await database.open()
        try:
            results.append(await apply_migrations(database))
        finally:
            await database.aclose()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(migrate)

    # exactly one opener applied each file; the others found it done
    assert sorted(m.version for r in results for m in r) == [m.version for m in available_migrations()]


async def test_changed_checksum_is_an_error_naming_the_file(empty_db: Database, empty_dsn: str) -> None:
    await apply_migrations(empty_db)
    await empty_db.execute(f"UPDATE {LEDGER} SET checksum = 'not-the-original' WHERE version = 1")

    with pytest.raises(ConfigurationError, match=r"0001_initial\.sql"):
        await apply_migrations(empty_db)

    with pytest.raises(ConfigurationError, match=r"0001_initial\.sql"):
        async with AgentMessaging[Any](Config(dsn=empty_dsn, pool_size=4)):
            pytest.fail("the runtime opened on a database whose migration file changed")

    # nothing was re-applied or rewritten
    rows = await ledger(empty_db)
    assert (rows[0]["version"], rows[0]["checksum"]) == (1, "not-the-original")


async def test_failing_migration_leaves_no_partial_state(empty_db: Database) -> None:
    await apply_migrations(empty_db)
    before = await ledger(empty_db)
    following = len(available_migrations()) + 1
    broken = [Migration(following, "broken", "CREATE TABLE x (a int); SELECT nonsense_fn();")]

    with pytest.raises(Exception, match="nonsense_fn"):
        await apply_migrations(empty_db, broken)

    assert not await table_exists(empty_db, "x")
    assert await ledger(empty_db) == before
    assert await empty_db.fetch_val(f"SELECT count(*) FROM {LEDGER} WHERE version = $1", [following]) == 0

    # a fixed migration with the same number then applies normally
    fixed = [Migration(following, "fixed", "CREATE TABLE x (a int);")]
    assert await apply_migrations(empty_db, fixed) == fixed
    assert await table_exists(empty_db, "x")


async def test_failing_migration_on_an_empty_database_leaves_it_empty(empty_db: Database) -> None:
    broken = [Migration(1, "broken", "CREATE TABLE y (a int); CREATE TABLE y (a int);")]
    with pytest.raises(Exception, match="already exists"):
        await apply_migrations(empty_db, broken)
    assert not await table_exists(empty_db, "y")
    if await table_exists(empty_db, LEDGER):
        assert await empty_db.fetch_val(f"SELECT count(*) FROM {LEDGER}") == 0
    assert not any(s.applied for s in await migration_status(empty_db))


async def test_runtime_applies_migrations_on_open(empty_dsn: str) -> None:
    async with AgentMessaging[Any](Config(dsn=empty_dsn, pool_size=4)) as am:
        statuses = await migration_status(internals(am).database)
        assert all(s.applied for s in statuses)
        await am.register_organization("acme", "Acme")
        assert (await am.get_organization("acme")).name == "Acme"


async def test_runtime_with_apply_migrations_off_leaves_the_database_empty(empty_dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="0001_initial") as caught:
        async with AgentMessaging[Any](Config(dsn=empty_dsn, pool_size=4, apply_migrations=False)):
            pytest.fail("the runtime opened on a database without its schema")
    assert "migrate" in str(caught.value)

    database = Database(empty_dsn, pool_size=3)
    await database.open()
    try:
        tables = await database.fetch_val(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        assert tables == 0
        assert not any(s.applied for s in await migration_status(database))

        # once migrated (for example by 'agent-messaging db migrate'), it opens without migrating
        await apply_migrations(database)
        async with AgentMessaging[Any](Config(dsn=empty_dsn, pool_size=4, apply_migrations=False)) as am:
            await am.register_organization("acme", "Acme")
        assert await database.fetch_val("SELECT count(*) FROM organizations") == 1
    finally:
        await database.aclose()
