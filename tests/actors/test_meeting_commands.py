"""Commands of other runtimes that meet a meeting's end: each is answered ``MeetingEnded`` at once (not at the
next sweep), and none is left open in the database."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, MeetingEnded
from agent_messaging._app import internals
from tests._helpers import eventually, holding

_OPEN = "SELECT count(*) FROM meeting_commands WHERE meeting_id = $1 AND done_at IS NULL"


def _config(dsn: str) -> Config:
    # a sweep far away: a caller that learns of the end learns it from the end itself
    return Config(dsn=dsn, pool_size=5, poll_interval=30, connect_timeout=5)


async def _setup(am: AgentMessaging[Any], *agents: str) -> None:
    await am.register_organization("acme", "Acme", exist_ok=True)
    for name in agents:
        await am.register_agent(name, "acme", name, exist_ok=True)


async def test_a_command_written_while_the_end_commits_is_answered_at_once(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as runner, AgentMessaging[Any](_config(dsn)) as other:
        await _setup(runner, "chair", "guest")
        meeting = await runner.meeting.create_meeting("chair", ["guest"])
        db = internals(runner).database
        got: dict[str, Any] = {}

        async def guest() -> None:
            with anyio.fail_after(5):
                try:
                    got["guest"] = await other.meeting.attend_meeting("guest", meeting)
                except MeetingEnded as exc:
                    got["guest"] = exc

        # the meeting's row is held: the end's commit waits behind it, after its statement has begun
        row_lock = ("SELECT 1 FROM meetings WHERE id::text = $1 FOR NO KEY UPDATE", [str(meeting)])
        async with anyio.create_task_group() as tg, holding(dsn, ("BEGIN", []), row_lock):
            tg.start_soon(runner.meeting.end_meeting, "chair", meeting)
            await anyio.sleep(0.3)
            tg.start_soon(guest)  # its command is written now, and its caller waits
            await eventually(lambda: _count(db, meeting, "SELECT count(*) FROM meeting_commands"), 10)
            await anyio.sleep(0.2)
            assert "guest" not in got
        assert isinstance(got["guest"], MeetingEnded)
        assert await db.fetch_val(_OPEN, [meeting]) == 0  # its caller closed it


async def test_a_command_its_runner_never_heard_of_is_answered_by_the_end(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as runner:
        await _setup(runner, "chair", "guest")
        meeting = await runner.meeting.create_meeting("chair", ["guest"])
        db = internals(runner).database
        # written as by a runtime whose NOTIFY was lost (its caller died since): the runner never takes it
        await db.execute(
            "INSERT INTO meeting_commands (id, meeting_id, op, agent_id, origin) "
            "SELECT gen_random_uuid(), $1, 'speak', id, 'gone' FROM agents WHERE external_id = 'guest'",
            [meeting],
        )
        await runner.meeting.end_meeting("chair", meeting)
        assert await db.fetch_val(_OPEN, [meeting]) == 0
        error = await db.fetch_val("SELECT error::text FROM meeting_commands WHERE meeting_id = $1", [meeting])
        assert "MeetingEnded" in error
        with pytest.raises(MeetingEnded):
            await runner.meeting.speak("guest", meeting, "too late")


async def _count(db: Any, meeting: Any, sql: str) -> bool:
    return bool(await db.fetch_val(f"{sql} WHERE meeting_id = $1", [meeting]))
