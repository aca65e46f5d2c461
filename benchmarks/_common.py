"""Shared set-up for the benchmarks: a database per run, bulk agent creation, percentiles, RSS."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.persistence.database import Database
from agent_messaging.persistence.embedded import _start, _stop


@contextlib.contextmanager
def server_dsn() -> Iterator[str]:
    """``AGENT_MESSAGING_DSN`` if set, else an embedded server in a temporary directory."""
    dsn = os.environ.get("AGENT_MESSAGING_DSN")
    if dsn:
        yield dsn
        return
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        handle = _start(Path(tmp) / "pgdata")
        try:
            yield handle.dsn
        finally:
            _stop(handle)


async def fresh_database(server: str, name: str) -> str:
    """Create (or recreate) database ``name`` on ``server`` and return its DSN."""
    db = Database(server, pool_size=2)
    await db.open()
    try:
        await db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await db.execute(f"CREATE DATABASE {name}")
    finally:
        await db.aclose()
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def bulk_agents(am: AgentMessaging[object], org: str, names: list[str]) -> None:
    """Register many agents in one statement (benchmark set-up, not the measured path)."""
    organization = await am.get_organization(org)
    await internals(am).database.execute(
        "INSERT INTO agents (id, organization_id, external_id, name) "
        "SELECT i, $1, n, n FROM unnest($2::uuid[], $3::text[]) AS u(i, n)",
        [organization.id, [uuid.uuid4() for _ in names], names],
    )
    host = internals(am).host  # what register_agent does for each: host the specs waiting for these agents
    await host.host_many(list(host.waiting.values()))


def config(dsn: str, **overrides: object) -> Config:
    """A benchmark Config for ``dsn``."""
    values: dict[str, object] = {"dsn": dsn, "pool_size": 10, "poll_interval": 5.0}
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values) if values else float("nan")


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.asynccontextmanager
async def runtime(dsn: str, **overrides: object) -> AsyncIterator[AgentMessaging[object]]:
    """An open runtime on ``dsn``."""
    async with AgentMessaging[object](config(dsn, **overrides)) as am:
        yield am
