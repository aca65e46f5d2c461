"""Recovery: a runtime SIGKILLed mid-meeting; a new runtime resumes at the right speaker with the remaining time."""

from __future__ import annotations

import json
import signal
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from agent_messaging import AgentMessaging, Config
from agent_messaging.models import MeetingEventType, MeetingState, Turn
from tests._helpers import attend_all

pytestmark = pytest.mark.slow
E = MeetingEventType
CHILD = Path(__file__).with_name("_meeting_crash_child.py")
SRC = str(Path(__file__).resolve().parents[2] / "src")


async def prepare(config: Config) -> None:
    async with AgentMessaging[Any](config) as am:
        await am.register_organization("acme", "Acme")
        for name in ("host", "a", "b", "h"):
            await am.register_agent(name, "acme", name.upper())


async def run_child_until_b_has_floor(dsn: str, turn_duration: float) -> dict[str, Any]:
    """Start the child runtime, wait until b holds the floor, then SIGKILL it."""
    env = {"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}
    async with await anyio.open_process(
        [sys.executable, str(CHILD), dsn, str(turn_duration)], env=env, stderr=None
    ) as process:
        assert process.stdout is not None
        info: dict[str, Any] | None = None
        buffer = ""
        with anyio.fail_after(30):
            async for chunk in TextReceiveStream(process.stdout):
                buffer += chunk
                for line in buffer.splitlines():
                    if line.startswith('{"meeting"'):
                        info = json.loads(line)
                if info is not None:
                    break
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert process.returncode == -signal.SIGKILL
    assert info is not None
    return info


async def test_sigkill_mid_meeting_then_resume(config: Config, dsn: str) -> None:
    await prepare(config)
    info = await run_child_until_b_has_floor(dsn, 30.0)
    mid = uuid.UUID(info["meeting"])
    deadline = datetime.fromisoformat(info["deadline"])

    am = AgentMessaging[Any](config)
    h_turns: list[Turn[Any]] = []

    @am.register_turn_handler("h")
    async def on_turn(turn: Turn[Any]) -> str:
        h_turns.append(turn)
        return "h after the restart"

    async with am:
        status = await am.meeting.get_meeting_status(mid)
        assert status.state is MeetingState.ACTIVE
        assert status.floor_holder == "b"
        assert status.turn_number == info["turn"] == 2
        assert status.turn_deadline == deadline
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        assert 20 < remaining < 30
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                results = attend_all(tg, am, mid, "a")  # a waits: not its turn
                await anyio.sleep(0.2)  # let a's attend reach the meeting before it ends
                turn = await am.meeting.attend_meeting("b", mid)  # the floor holder gets it back at once
                assert turn.turn_number == 2
                assert turn.deadline == deadline
                assert "a before the crash" in [m.message for m in turn.messages]

                async def b_speaks() -> None:
                    results["b"] = await am.meeting.speak("b", mid, "b after the restart")  # -> h -> host

                tg.start_soon(b_speaks)
                results["host"] = await am.meeting.attend_meeting("host", mid)
                await am.meeting.end_meeting("host", mid)
        assert results["b"].ended
        assert results["host"].turn_number == 4
        assert [m.message for m in results["host"].messages if m.type is E.AGENT_SPOKE] == [
            "a before the crash",
            "b after the restart",
            "h after the restart",
        ]
        assert results["a"].ended
        assert h_turns
        assert h_turns[0].turn_number == 3

    async with AgentMessaging[Any](config) as am2:
        history = await am2.meeting.get_meeting_history(mid)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert history[-1].type is E.MEETING_ENDED


async def test_deadline_passed_while_down_times_out_at_once(config: Config, dsn: str) -> None:
    await prepare(config)
    info = await run_child_until_b_has_floor(dsn, 1.0)
    mid = uuid.UUID(info["meeting"])
    await anyio.sleep(1.2)  # the turn's deadline passes while no runtime runs the meeting

    am = AgentMessaging[Any](config)

    @am.register_turn_handler("h")
    async def on_turn(turn: Turn[Any]) -> str:
        return "h after the restart"

    async with am:
        with anyio.fail_after(10):
            turn = await am.meeting.attend_meeting("host", mid)  # b times out at once, h speaks, host's turn
            await am.meeting.end_meeting("host", mid)
        assert turn.turn_number == 4
        history = await am.meeting.get_meeting_history(mid)
        kinds = [(e.type, e.agent) for e in history]
        assert (E.AGENT_TIMED_OUT, "b") in kinds
        assert (E.AGENT_SPOKE, "h") in kinds
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
