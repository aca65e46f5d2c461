"""``pool_size`` is the number of connections a runtime opens in all: its pool, the LISTEN connection and the
presence connection, counted by the server in ``pg_stat_activity``."""

from __future__ import annotations

import gc
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from tests._helpers import eventually
from tests.conftest import admin


async def server_connections(dsn: str) -> int:
    """Client connections to this test's database, the counting connection excluded."""
    rows = await anyio.to_thread.run_sync(
        admin,
        dsn,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
    )
    return int(rows[0]["n"])


@pytest.mark.parametrize(("pool_size", "notify"), [(10, True), (4, True), (4, False)])
async def test_pool_size_counts_every_connection(dsn: str, pool_size: int, notify: bool) -> None:
    config = Config(dsn=dsn, pool_size=pool_size, notify=notify, connect_timeout=5)
    async with AgentMessaging[Any](config) as am:
        database = internals(am).database
        # more concurrent queries than connections: the pool grows to its largest
        async with anyio.create_task_group() as tg:
            for _ in range(4 * pool_size):
                tg.start_soon(database.fetch_val, "SELECT 1 FROM pg_sleep(0.05)")
        await am.register_organization("acme", "Acme")
        await am.register_agent("a", "acme", "A")
        await am.register_agent("b", "acme", "B")
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(am.one_way.send, "a", "b", {"i": i})
        assert await server_connections(dsn) == pool_size

    async def all_closed() -> bool:  # a backend exits shortly after its client hangs up
        # a driver connection an unreachable Python object still holds closes at the next collection (seen
        # once in CI, on trio under load): collect, so what this finds open is a connection something holds
        gc.collect()
        return await server_connections(dsn) == 0

    await eventually(all_closed)
