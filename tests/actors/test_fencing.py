"""Fenced ownership: a runtime that loses its presence stops handling at once and re-validates its claims;
a meeting transition commits only in the runtime the database names as the meeting's runner; a deregistered
agent receives nothing, whatever another runtime's cache says."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, AgentNotFound, Config, RunnerMoved
from agent_messaging._app import internals
from tests._helpers import eventually


def _config(dsn: str, **extra: Any) -> Config:
    return Config(dsn=dsn, pool_size=5, poll_interval=0.1, connect_timeout=5, ownership_lease=1.0, **extra)


async def _setup(am: AgentMessaging[Any], *agents: str) -> None:
    await am.register_organization("acme", "Acme", exist_ok=True)
    for name in agents:
        await am.register_agent(name, "acme", name, exist_ok=True)


async def test_a_runtime_that_loses_its_presence_fences_itself_and_takes_its_agents_back(dsn: str) -> None:
    seen: list[tuple[str, Any]] = []
    owner, standby = AgentMessaging[Any](_config(dsn)), AgentMessaging[Any](_config(dsn))
    for tag, am in (("owner", owner), ("standby", standby)):

        @am.register_handler("bob")
        async def bob(message: Any, ctx: Any, tag: str = tag) -> None:
            seen.append((tag, message))

    async with owner:
        await _setup(owner, "alice", "bob")  # hosted here before the standby opens: the owner is bob's owner
        mine = internals(owner)
        await eventually(lambda: "bob" in mine.host.hosted)
        async with standby:
            other = internals(standby)
            await eventually(lambda: "bob" in other.host.standby)
            # the database drops the owner's presence connection (and so its lock), the process lives on
            await other.database.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                "'agent-messaging-presence' AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                "AND ((classid::bigint << 32) | objid::bigint) = $1)",
                [mine.services.presence.key],
            )
            await eventually(lambda: mine.services.presence.outages == 1)  # it noticed, and fenced itself
            await eventually(lambda: mine.services.presence.held and "bob" in mine.host.hosted)  # and took bob back
            assert "bob" in other.host.standby  # back within the lease: the standby never took over
            await standby.one_way.send("alice", "bob", "after")
            await eventually(lambda: ("owner", "after") in seen)
            assert [tag for tag, _ in seen] == ["owner"]


async def test_a_transition_of_a_runtime_that_no_longer_runs_the_meeting_is_refused(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as first, AgentMessaging[Any](_config(dsn)) as second:
        await _setup(first, "chair", "guest")
        meeting = await first.meeting.create_meeting("chair", ["guest"])
        got: dict[str, Any] = {}

        async def guest() -> None:
            got["guest"] = await first.meeting.attend_meeting("guest", meeting)

        async def chair() -> None:  # waits in the first runtime for its next turn
            try:
                await first.meeting.start_meeting("chair", meeting, "hello", next_speaker="guest")
            except RunnerMoved as exc:
                got["chair"] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(guest)
            await eventually(lambda: _present(first, meeting, "guest"))
            tg.start_soon(chair)
            await eventually(lambda: "guest" in got)  # the guest holds the floor
            # the second runtime takes the meeting over behind the first one's back (as after a lost connection)
            parts = internals(second)
            await parts.database.execute(
                "UPDATE meeting_hosts SET runtime_key = $2, runtime_id = $3 WHERE meeting_id = $1",
                [meeting, parts.services.presence.key, parts.services.runtime_id],
            )
            await parts.runners.take_over([meeting])
            assert meeting in parts.runners.handles
            before = await first.meeting.get_meeting_history(meeting)
            with pytest.raises(RunnerMoved, match="call attend_meeting"):
                await first.meeting.speak("guest", meeting, "from the first runtime")
            assert await first.meeting.get_meeting_history(meeting) == before  # nothing of it was written
            assert meeting not in internals(first).runners.handles  # the first runtime stopped running it
            await eventually(lambda: "chair" in got)  # its caller waiting there was told to call again
        # called again, the same call reaches the meeting where it runs now
        await first.meeting.leave_meeting("guest", meeting)
        status = await second.meeting.get_meeting_status(meeting)
        assert [p.agent for p in status.participants if p.status.value == "left"] == ["guest"]


def _present(am: AgentMessaging[Any], meeting: Any, agent: str) -> bool:
    handle = internals(am).runners.handles.get(meeting)
    return handle is not None and handle.seats[agent].status.value == "present"


async def test_a_deregistered_agent_receives_nothing_through_another_runtimes_cache(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as first, AgentMessaging[Any](_config(dsn)) as second:
        await _setup(first, "alice", "bob")
        await second.one_way.send("alice", "bob", "cached")  # the second runtime now knows bob
        await first.deregister_agent("bob")
        with pytest.raises(AgentNotFound, match="bob"):
            await second.one_way.send("alice", "bob", "after deregistration")
        with pytest.raises(AgentNotFound, match="bob"):
            await second.conversation.send("alice", "bob", "a chat line")
        db = internals(first).database
        assert await db.fetch_val("SELECT count(*) FROM messages") == 1
