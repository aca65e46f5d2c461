"""Every operation from every process: meetings, replies, deadlocks, handler errors and restarts across real processes.

The test's own runtime (``local``) talks to agents hosted by ``agent-messaging run`` children and to
meetings run by script children, on one database; children are killed with SIGKILL where a test says so.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import pytest
from typer.testing import CliRunner

from agent_messaging import AgentMessaging, AgentStatus, HandlerError, MeetingEventType, Turn
from agent_messaging._app import internals
from agent_messaging.cli import app
from agent_messaging.persistence.store import hosts
from tests._helpers import eventually
from tests._processes import Child
from tests.multiprocess.conftest import reported

AM = AgentMessaging[Any]
E = MeetingEventType


def spoken(turn: Turn[Any]) -> list[tuple[str | None, Any]]:
    return [(m.agent, m.message) for m in turn.messages if m.type is E.AGENT_SPOKE]


async def test_on_turn_participants_hosted_in_another_process_take_their_turns(
    local: AM, run_child: Callable[..., Any]
) -> None:
    child: Child = await run_child(turns="p1,p2")
    meeting = await local.meeting.create_meeting("chair", ["p1", "p2"], turn_duration=10)
    with anyio.fail_after(30):
        turn = await local.meeting.start_meeting("chair", meeting, {"agenda": "plan"})
        again = await local.meeting.speak("chair", meeting, {"round": 2})
        await local.meeting.end_meeting("chair", meeting)
    pid = child.proc.pid
    # the host's turn brings what was said since its last one: the two participants, from the child
    assert spoken(turn) == [
        ("p1", {"said": "p1", "turn": 1, "pid": pid}),
        ("p2", {"said": "p2", "turn": 2, "pid": pid}),
    ]
    assert [agent for agent, _ in spoken(again)] == ["p1", "p2"]
    history = await local.meeting.get_meeting_history(meeting)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert [e.agent for e in history if e.type is E.AGENT_SPOKE] == ["chair", "p1", "p2", "chair", "p1", "p2"]


async def test_an_imperative_participant_speaks_from_another_process(local: AM, script: Callable[..., Child]) -> None:
    chair = script("chair-meeting", "chair", "p1")  # this child creates and runs the meeting, and chairs it
    meeting = UUID(await reported(chair, "meeting"))
    with anyio.fail_after(30):
        turn = await local.meeting.attend_meeting("p1", meeting)  # from this process, run by the child
        assert spoken(turn) == [("chair", {"opening": True})]
        last = await local.meeting.speak("p1", meeting, {"from": "p1"})
    assert last.ended
    host_turn = await reported(chair, "host_turn")
    assert host_turn["spoken"] == [["p1", {"from": "p1"}]]
    assert meeting not in internals(local).runners.handles  # the child ran it all along
    assert await reported(chair, "ended") is True


async def test_a_runner_killed_while_remote_participants_wait_is_taken_over_and_loses_nothing(
    local: AM, script: Callable[..., Child]
) -> None:
    runner = script("hold-meeting", "chair", "p1", "p2", "p3")
    meeting = UUID(await reported(runner, "meeting"))
    turns: dict[str, Turn[Any]] = {}

    async def attend(agent: str) -> None:
        turns[agent] = await local.meeting.attend_meeting(agent, meeting)
        await local.meeting.speak(agent, meeting, {"from": agent})

    async with anyio.create_task_group() as tg:
        tg.start_soon(attend, "p1")
        tg.start_soon(attend, "p2")
        other = script("attend", "p3", str(meeting))  # a third process waits too

        async def everyone_present() -> bool:
            status = await local.meeting.get_meeting_status(meeting)
            return all(p.status.value == "present" for p in status.participants)

        await eventually(everyone_present, 30)
        killed_pid = runner.proc.pid
        runner.proc.send_signal(signal.SIGKILL)  # the runner dies with three callers waiting on it
        runner.proc.wait(10)
        killed = time.monotonic()

        # the next runtime to notice (a waiting caller's, at its next wake-up: this one or p3's) takes it over
        async def taken() -> bool:
            runner = await hosts.meeting_runner(internals(local).database, meeting)
            return runner is not None and runner["pid"] != killed_pid and bool(runner["alive"])

        await eventually(taken, 30)
        taken_over = time.monotonic() - killed
        with anyio.fail_after(30):
            start = await local.meeting.start_meeting("chair", meeting, {"agenda": "after the crash"})
            assert spoken(start) == [("p1", {"from": "p1"}), ("p2", {"from": "p2"}), ("p3", {"from": "p3"})]
        tg.start_soon(local.meeting.end_meeting, "chair", meeting)
    # p1 and p2 (this process) got their turns from the new runner; p3 (another process) too
    assert set(turns) == {"p1", "p2"}
    first = await reported(other, "turn")
    assert first["agent"] == "p3"
    assert not first["ended"]
    history = await local.meeting.get_meeting_history(meeting)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))  # gap-free: one writer at a time
    joined = [e.agent for e in history if e.type is E.AGENT_JOINED]
    assert sorted(str(agent) for agent in joined) == ["chair", "p1", "p2", "p3"]  # every attend applied once, none lost
    assert taken_over < 10


async def test_two_processes_replying_at_once_exactly_one_wins(
    local: AM, script: Callable[..., Child], tmp_path: Path
) -> None:
    rounds = 15
    repliers = [script("reply-rounds", "bob", "alice", str(tmp_path), str(rounds)) for _ in range(2)]
    for child in repliers:
        assert await reported(child, "ready")
    answers: list[Any] = []
    outcomes: dict[int, list[bool]] = {i: [] for i in range(rounds)}
    for i in range(rounds):
        async with anyio.create_task_group() as tg:

            async def call(i: int = i) -> None:
                answers.append(await local.conversation.send_and_wait("alice", "bob", {"q": i}, timeout=30))

            tg.start_soon(call)

            async def requested(i: int = i) -> bool:
                unread = await local.conversation.get_messages_from_agent("bob", "alice", include_read=False)
                return any(m.payload == {"q": i} for m in unread)

            await eventually(requested, 30)
            (tmp_path / f"go-{i}").touch()  # both repliers at the same instant
        # both have replied before the next request exists: a reply without a request id answers the oldest
        # open request, so a replier still on its way would otherwise answer the next round's
        for child in repliers:
            line = json.loads(await child.line('{"round"'))
            outcomes[line["round"]].append(line["won"])
    assert all(sorted(won) == [False, True] for won in outcomes.values()), outcomes
    assert [a["round"] for a in answers] == list(range(rounds))
    replies = await internals(local).database.fetch_val("SELECT count(*) FROM messages WHERE kind = 'reply'")
    assert replies == rounds


async def test_a_deadlock_across_two_processes_is_answered_at_once(local: AM, run_child: Callable[..., Any]) -> None:
    await run_child(host="alice")
    await run_child(host="bob")
    # user -> alice -> bob -> alice: bob's call back to alice closes the cycle, in another process than alice's
    request = {"op": "call", "to": "bob", "then": {"op": "call", "to": "alice", "then": {"op": "echo"}}}
    started = time.monotonic()
    with anyio.fail_after(10), pytest.raises(HandlerError) as caught:
        await local.conversation.send_and_wait("user", "alice", request, timeout=60)
    assert time.monotonic() - started < 5
    assert caught.value.agent == "alice"
    assert "DeadlockDetected" in caught.value.error_message
    assert "bob -> alice -> bob" in caught.value.error_message
    # both agents keep running
    for name in ("alice", "bob"):
        assert (await local.get_agent(name)).status is AgentStatus.ACTIVE
        answer = await local.conversation.send_and_wait("user", name, {"op": "echo", "text": "still there"})
        assert answer["by"] == name


async def test_a_handler_error_reaches_a_caller_in_another_process(local: AM, run_child: Callable[..., Any]) -> None:
    child: Child = await run_child(host="bob")
    with anyio.fail_after(20), pytest.raises(HandlerError) as caught:
        await local.conversation.send_and_wait("alice", "bob", {"op": "fail"}, timeout=60)
    error = caught.value
    assert (error.agent, error.error_type, error.error_message) == ("bob", "ValueError", "bob was asked to fail")
    assert "Traceback" in error.remote_traceback
    answer = await local.conversation.send_and_wait("alice", "bob", {"op": "echo", "text": "hi"}, timeout=20)
    assert answer == {"echo": "hi", "by": "bob", "pid": child.proc.pid}


async def test_a_failed_agent_is_restarted_from_the_cli(
    local: AM, run_child: Callable[..., Any], tmp_path: Path, dsn: str
) -> None:
    await run_child(host="flaky", AM_FLAGS=str(tmp_path), AM_MAX_ATTEMPTS="100")  # it fails before a dead letter
    await local.one_way.send("user", "flaky", {"op": "flaky"})

    async def failed() -> bool:
        return (await local.get_agent("flaky")).status is AgentStatus.FAILED

    await eventually(failed, 30)
    (tmp_path / "fixed").touch()
    result = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(app, ["agents", "restart", "flaky", "--dsn", dsn], prog_name="agent-messaging")
    )
    assert result.exit_code == 0, result.output
    assert "active again" in result.stdout
    await eventually(lambda: any(p.name.startswith("handled-") for p in tmp_path.iterdir()), 30)
    assert (await local.get_agent("flaky")).status is AgentStatus.ACTIVE
    listed = await anyio.to_thread.run_sync(
        lambda: CliRunner().invoke(app, ["agents", "list", "--json", "--dsn", dsn], prog_name="agent-messaging")
    )
    flaky = next(a for a in json.loads(listed.stdout) if a["agent"] == "flaky")
    assert flaky["restarts"] >= 2
    assert flaky["last_error"] == "RuntimeError: not fixed yet"
