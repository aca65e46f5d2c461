"""PostgreSQL restarted (fast, immediate) and stopped for longer than the ownership lease, under load, with
several runtimes: nothing acknowledged is lost, no agent is ever handled by two processes at once, and the
runtimes re-establish their presence and their LISTEN connection (wake-ups by NOTIFY again, not by the sweep).

The figures of each run (acknowledged, lost, overlapping runs, duplicates from redelivery, recovery time) are
printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import math
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, PersistenceUnavailable
from agent_messaging._app import internals
from tests._helpers import eventually
from tests._processes import STEP, Child
from tests.faults.conftest import OwnServer, read_runs

pytestmark = pytest.mark.anyio

APP = "tests.faults._fault_app:am"
AGENTS = [f"w{i}" for i in range(6)]
LEASE = 1.0


async def _setup(am: AgentMessaging[Any]) -> None:
    await am.register_organization("faults", "Faults", exist_ok=True)
    for name in ["sender", *AGENTS]:
        await am.register_agent(name, "faults", name, exist_ok=True)


def _config(dsn: str, **extra: Any) -> Config:
    values: dict[str, Any] = {
        "dsn": dsn,
        "pool_size": 6,
        "poll_interval": 0.2,
        "ownership_lease": LEASE,
        "persistence_timeout": 120,
        "connect_timeout": 10,
        **extra,
    }
    return Config(**values)


async def _hosting_child(spawn: Callable[..., Child], backend: str, dsn: str, records: Path) -> Child:
    child = spawn(
        "-m", "agent_messaging", "run", APP, "--backend", backend, "--log-level", "warning",
        AGENT_MESSAGING_DSN=dsn, FAULT_AGENTS=",".join(AGENTS), FAULT_RECORDS=str(records),
        FAULT_LEASE=str(LEASE), FAULT_POLL="0.2",
    )  # fmt: skip
    await child.line(f"agent-messaging run {APP}:")
    return child


async def test_restarts_under_load_lose_nothing_and_never_run_an_agent_twice_at_once(
    own_server: OwnServer, own_db: str, spawn: Callable[..., Child], anyio_backend: str, tmp_path: Path
) -> None:
    dsn = own_db
    records = tmp_path / "records"
    records.mkdir()
    async with AgentMessaging[Any](_config(dsn)) as am:
        await _setup(am)
        owner = await _hosting_child(spawn, anyio_backend, dsn, records)
        standby = await _hosting_child(spawn, anyio_backend, dsn, records)  # hosts the same agents: on standby
        acked: list[uuid.UUID] = []
        refused = 0
        calls: list[float] = []
        stop = anyio.Event()

        async def send(first: int) -> None:
            nonlocal refused
            n = first
            while not stop.is_set():
                try:
                    acked.extend(await am.one_way.send("sender", AGENTS[n % len(AGENTS)], {"n": n}))
                except PersistenceUnavailable:
                    refused += 1  # not acknowledged: not counted
                n += 4

        answered = anyio.Event()

        async def call() -> None:
            nonlocal answered
            n = 0
            while not stop.is_set():
                began = time.monotonic()
                reply = await am.conversation.send_and_wait("sender", AGENTS[n % len(AGENTS)], {"n": n}, timeout=60)
                assert reply["n"] == n
                calls.append(time.monotonic() - began)
                answered.set()
                answered = anyio.Event()
                n += 1

        faults: list[tuple[str, float, float]] = []  # (kind, seconds away, seconds until a call went through)
        async with anyio.create_task_group() as tg:
            for first in range(4):
                tg.start_soon(send, first)
            tg.start_soon(call)
            await anyio.sleep(1.5)
            for kind in ("fast", "immediate", "outage"):
                done = len(calls)
                if kind == "outage":  # longer than the lease: the standby may take the agents over
                    away = await anyio.to_thread.run_sync(own_server.outage, 2.5 * LEASE)
                else:
                    away = await anyio.to_thread.run_sync(own_server.restart, kind)
                back = time.monotonic()
                with anyio.fail_after(STEP):
                    while len(calls) <= done + 1:  # a call made after the restart went through
                        await answered.wait()
                faults.append((kind, away, time.monotonic() - back))
                await anyio.sleep(1.5)
            stop.set()

        # every acknowledged message is handled, once the dust settled
        db = internals(am).database

        async def all_handled() -> bool:
            sql = "SELECT count(*) FROM messages WHERE id = ANY($1::uuid[]) AND handled_at IS NULL"
            return bool(await db.fetch_val(sql, [acked]) == 0)

        await eventually(all_handled, STEP)

        # both children re-established presence and LISTEN after each fault
        for child in (owner, standby):
            await child.seen("presence.restored", 3)
            await child.seen("listener.restored", 3)
        # and each agent has one owner, one of the two
        rows = await db.fetch("SELECT agent_id, pid FROM agent_hosts")
        assert len(rows) == len(AGENTS)
        assert {r["pid"] for r in rows} <= {owner.proc.pid, standby.proc.pid}

    runs = read_runs(records)
    handled = {key for key, pids in runs.done.items() if pids}
    lost = [i for i in acked if str(i) not in handled]
    overlaps = runs.overlaps()
    print(
        f"\n[{anyio_backend}] acknowledged {len(acked)} one-way messages (+{len(calls)} calls), lost {len(lost)}, "
        f"refused while away {refused}, overlapping runs {len(overlaps)}, duplicates from redelivery "
        f"{runs.duplicates()}; call p50 before {_p50(calls[:20]) * 1000:.1f} ms, after "
        f"{_p50(calls[-20:]) * 1000:.1f} ms; "
        + "; ".join(f"{k}: away {a:.2f}s, calls back after {r:.2f}s" for k, a, r in faults)
    )
    assert lost == []
    assert overlaps == []


async def test_after_a_restart_notify_wakes_other_runtimes_again(
    own_server: OwnServer, own_db: str, spawn: Callable[..., Child], anyio_backend: str, tmp_path: Path
) -> None:
    """The LISTEN connection comes back: with a sweep far slower than the test's bounds, a message written by
    another process after a restart reaches its hosted recipient only through NOTIFY."""
    dsn = own_db
    records = tmp_path / "records"
    records.mkdir()
    async with AgentMessaging[Any](_config(dsn, poll_interval=3600)) as am:
        await _setup(am)
        child = spawn(
            "-m", "agent_messaging", "run", APP, "--backend", anyio_backend, "--log-level", "warning",
            AGENT_MESSAGING_DSN=dsn, FAULT_AGENTS="w0", FAULT_RECORDS=str(records), FAULT_LEASE=str(LEASE),
            FAULT_POLL="3600",
        )  # fmt: skip
        await child.line(f"agent-messaging run {APP}:")
        assert (await am.conversation.send_and_wait("sender", "w0", {"n": 0}, timeout=30))["n"] == 0
        await anyio.to_thread.run_sync(own_server.restart, "fast")
        await child.seen("listener.restored")
        await child.seen("presence.restored")
        news = internals(am).services.news
        await eventually(lambda: news.reconnects >= 1, STEP)  # this runtime listens again too
        with anyio.fail_after(30):  # the sweep would take an hour
            reply = await am.conversation.send_and_wait("sender", "w0", {"n": 1}, timeout=30)
        assert reply["n"] == 1


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan
