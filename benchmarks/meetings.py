"""Meeting benchmarks, on asyncio and on trio.

    python benchmarks/meetings.py

Uses ``AGENT_MESSAGING_DSN`` if set, else an embedded PostgreSQL in a temporary
directory. Scenarios (all participants are hosted agents with a turn handler):

1. one meeting of 50 agents, 2,000 turns: turns/s, and the turn hand-off time
   (a speak committed and the next speaker woken) p50/p99;
2. 100 meetings of 5 agents, 20 turns each, concurrently: total turns/s, and the
   most connections the runtime held (pg_stat_activity) against ``pool_size``;
3. 1,000 meetings of 3 agents, one round each, concurrently: wall time and RSS.
"""

from __future__ import annotations

import itertools
import resource
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bulk_agents, config, fresh_database, percentile, server_dsn

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.models import Turn


async def register(am: AgentMessaging[Any], org: str, names: list[str]) -> None:
    """Organization ``org`` and agents ``names`` (set-up, not measured)."""
    await am.register_organization(org, org)
    await bulk_agents(am, org, names)


def idea_runtime(cfg: Config, members: list[str]) -> AgentMessaging[Any]:
    """A runtime hosting ``members`` as participants that answer every turn with "an idea"."""
    am = AgentMessaging[Any](cfg)

    @am.register_turn_handler(*members)
    async def on_turn(turn: Turn[Any]) -> str:
        return "an idea"

    return am


async def one_big_meeting(cfg: Config, tag: str) -> None:
    am = AgentMessaging[Any](cfg)
    names = [f"{tag}-big-{i}" for i in range(50)]
    stamps: list[float] = []

    @am.register_turn_handler(*names)
    async def on_turn(turn: Turn[Any]) -> str:
        stamps.append(time.perf_counter())
        return "an idea"

    async with am:
        await register(am, f"{tag}-big", [f"{tag}-big-host", *names])
        mid = await am.meeting.create_meeting(f"{tag}-big-host", names)
        rounds = 2000 // 51 + 1
        start = time.perf_counter()
        turn = await am.meeting.start_meeting(f"{tag}-big-host", mid, "round 1")
        for r in range(2, rounds + 1):
            turn = await am.meeting.speak(f"{tag}-big-host", mid, f"round {r}")
        elapsed = time.perf_counter() - start
        await am.meeting.end_meeting(f"{tag}-big-host", mid)
    turns = turn.turn_number
    gaps = [(b - a) * 1000 for a, b in itertools.pairwise(stamps)]
    print(
        f"  1 x 50 agents, {turns} turns: {turns / elapsed:,.0f} turns/s; "
        f"hand-off p50 {percentile(gaps, 50):.2f} ms, p99 {percentile(gaps, 99):.2f} ms"
    )


async def many_meetings(cfg: Config, tag: str) -> None:
    hosts = [f"{tag}-m-host-{i}" for i in range(100)]
    members = [f"{tag}-m-{i}" for i in range(400)]
    am = idea_runtime(cfg, members)
    async with am:
        await register(am, f"{tag}-m", [*hosts, *members])
        peak = 0
        done = anyio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                n = await internals(am).database.fetch_val(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'agent-messaging'"
                )
                peak = max(peak, int(n))
                with anyio.move_on_after(0.05):
                    await done.wait()

        turns = 0

        async def meeting(i: int) -> None:
            nonlocal turns
            host = hosts[i]
            mid = await am.meeting.create_meeting(host, members[4 * i : 4 * i + 4])
            turn = await am.meeting.start_meeting(host, mid, "round 1")
            for r in range(2, 5):
                turn = await am.meeting.speak(host, mid, f"round {r}")
            turns += turn.turn_number
            await am.meeting.end_meeting(host, mid)

        async with anyio.create_task_group() as outer:
            outer.start_soon(sample)
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(meeting, i)
            elapsed = time.perf_counter() - start
            done.set()
    print(
        f"  100 x 5 agents x 20 turns: {turns} turns in {elapsed:.2f} s = {turns / elapsed:,.0f} turns/s; "
        f"peak connections {peak} (pool_size {cfg.pool_size})"
    )


async def thousand_meetings(cfg: Config, tag: str) -> None:
    hosts = [f"{tag}-k-host-{i}" for i in range(50)]
    members = [f"{tag}-k-{i}" for i in range(100)]
    am = idea_runtime(cfg, members)
    async with am:
        await register(am, f"{tag}-k", [*hosts, *members])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        async def meeting(i: int) -> None:
            host = hosts[i % 50]
            mid = await am.meeting.create_meeting(host, [members[(2 * i) % 100], members[(2 * i + 1) % 100]])
            await am.meeting.start_meeting(host, mid, "one round")
            await am.meeting.end_meeting(host, mid)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(meeting, i)
        elapsed = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"  1,000 x 3 agents, 1 round: {elapsed:.2f} s wall; "
        f"peak RSS {rss_after / 1024:.0f} MB (+{(rss_after - rss_before) / 1024:.0f} MB during the run)"
    )


async def suite(server: str, backend: str) -> None:
    cfg = config(await fresh_database(server, f"bench_meetings_{backend}"))
    tag = backend
    await one_big_meeting(cfg, tag)
    await many_meetings(cfg, tag)
    await thousand_meetings(cfg, tag)


def main() -> None:
    with server_dsn() as server:
        for backend in ("asyncio", "trio"):
            print(f"{backend}:")
            anyio.run(suite, server, backend, backend=backend)


if __name__ == "__main__":
    main()
