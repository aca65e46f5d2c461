"""Meetings at size: one 500-agent meeting, 1,000 concurrent meetings (hosted agents, real PostgreSQL)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging
from agent_messaging._app import internals
from agent_messaging.models import MeetingEventType, MeetingState, Turn

pytestmark = pytest.mark.slow
E = MeetingEventType


async def register(am: AgentMessaging[Any], names: list[str]) -> None:
    await am.register_organization("acme", "Acme")
    limiter = anyio.CapacityLimiter(4)

    async def one(name: str) -> None:
        async with limiter:
            await am.register_agent(name, "acme", name)

    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(one, name)


async def test_meeting_of_500_agents(am: AgentMessaging[Any]) -> None:
    names = [f"agent-{i:03}" for i in range(500)]
    await register(am, ["host", *names])
    turns_seen: dict[str, int] = {}

    @am.register_turn_handler(*names)
    async def on_turn(turn: Turn[Any]) -> str:
        turns_seen[turn.agent] = turns_seen.get(turn.agent, 0) + 1
        return f"{turn.agent} #{turns_seen[turn.agent]}"

    mid = await am.meeting.create_meeting("host", names)
    rounds = 3
    with anyio.fail_after(90):
        turn = await am.meeting.start_meeting("host", mid, "round 1")
        assert [m.agent for m in turn.messages if m.type is E.AGENT_SPOKE] == names
        for r in range(2, rounds + 1):
            turn = await am.meeting.speak("host", mid, f"round {r}")
        await am.meeting.end_meeting("host", mid)
    assert turn.turn_number == rounds * 501
    assert set(turns_seen.values()) == {rounds}
    history = await am.meeting.get_meeting_history(mid, limit=10_000)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert sum(e.type is E.AGENT_SPOKE for e in history) == rounds * 501
    status = await am.meeting.get_meeting_status(mid)
    assert status.state is MeetingState.ENDED
    assert len(status.participants) == 501


async def test_1000_concurrent_meetings_of_3_agents(am: AgentMessaging[Any]) -> None:
    hosts = [f"host-{i}" for i in range(10)]
    members = [f"member-{i}" for i in range(20)]
    await register(am, [*hosts, *members])

    @am.register_turn_handler(*members)
    async def on_turn(turn: Turn[Any]) -> str:
        return f"{turn.agent} says hi"

    ended: list[uuid.UUID] = []

    async def meeting(i: int) -> None:
        a, b = members[(2 * i) % 20], members[(2 * i + 1) % 20]
        mid = await am.meeting.create_meeting(hosts[i % 10], [a, b], turn_duration=60)
        turn = await am.meeting.start_meeting(hosts[i % 10], mid, "one round")
        assert [m.agent for m in turn.messages if m.type is E.AGENT_SPOKE] == [a, b]
        await am.meeting.end_meeting(hosts[i % 10], mid)
        ended.append(mid)

    with anyio.fail_after(100):
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(meeting, i)
    assert len(ended) == 1000
    rows = await internals(am).database.fetch(
        "SELECT count(*) AS n, max(seq) AS m, count(*) FILTER (WHERE type = 'agent_spoke') AS spoke "
        "FROM meeting_events GROUP BY meeting_id"
    )
    assert len(rows) == 1000
    assert all(r["n"] == r["m"] and r["spoke"] == 3 for r in rows)
    assert await am.meeting.list_meetings(active=True) == []
