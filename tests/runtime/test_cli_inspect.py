"""Operator commands (``agents``, ``messages``, ``meetings``, ``dead-letters``) against a live runtime's database."""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from agent_messaging import AgentMessaging, Config, MessageContext, Turn
from agent_messaging.cli import app

UNREACHABLE = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/nowhere"


pytestmark = pytest.mark.usefixtures("restore_logging")


def invoke(dsn: str, *args: str) -> Result:
    env = {"AGENT_MESSAGING_DSN": dsn, "AGENT_MESSAGING_LOG_LEVEL": None, "AGENT_MESSAGING_CONNECT_TIMEOUT": "1"}
    return CliRunner().invoke(app, list(args), env=env, prog_name="agent-messaging")


async def cli(dsn: str, *args: str) -> Result:
    """Run a command in a worker thread (it runs its own event loop) while the test's runtime stays open."""
    return await anyio.to_thread.run_sync(lambda: invoke(dsn, *args))


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


async def seed(am: AgentMessaging[Any]) -> str:
    """Organization 'acme' with agents; one dead letter, unread messages, an ended meeting. Returns its id."""
    await am.register_organization("acme", "Acme")
    for name in ("boss", "worker", "broken", "reader", "p1"):
        await am.register_agent(name, "acme", name)
    await am.register_organization("other", "Other")
    await am.register_agent("stranger", "other", "Stranger")
    await am.one_way.send("boss", ["reader"], {"text": "read me"})
    await am.one_way.send("worker", ["reader"], {"text": "from worker"})
    await am.one_way.send("boss", ["worker"], {"text": "handled"})
    await am.one_way.send("boss", ["broken"], {"text": "this fails"})
    with anyio.fail_after(20):
        while not await am.get_dead_letters("broken"):  # noqa: ASYNC110 - polling the database
            await anyio.sleep(0.05)
    meeting = await am.meeting.create_meeting("boss", ["p1"], turn_duration=5)
    await am.meeting.start_meeting("boss", meeting, {"text": "opening"})
    await am.meeting.end_meeting("boss", meeting, message={"text": "bye"})
    return str(meeting)


@pytest.fixture
def runtime_config(dsn: str) -> Config:
    return Config(dsn=dsn, pool_size=4, max_attempts=1, restart_backoff_initial=0, restart_backoff_max=0)


async def test_inspection_commands(runtime_config: Config, dsn: str) -> None:
    am = AgentMessaging[Any](runtime_config)
    handled = anyio.Event()
    fixed = False
    handled_after_retry = anyio.Event()

    @am.register_handler("worker")
    async def worker(message: Any, ctx: MessageContext[Any]) -> None:
        handled.set()

    @am.register_handler("broken")
    async def broken(message: Any, ctx: MessageContext[Any]) -> None:
        if not fixed:
            raise RuntimeError("boom")
        handled_after_retry.set()

    @am.register_turn_handler("p1")
    async def p1(turn: Turn[Any]) -> Any:
        return {"text": "p1 speaks"}

    async with am:
        meeting = await seed(am)
        await handled.wait()

        # agents list: hosted here (this pid, alive), unread counts, restarts as stored (readable anywhere)
        agents = {a["agent"]: a for a in ok_json(await cli(dsn, "agents", "list", "--org", "acme", "--json"))}
        assert set(agents) == {"boss", "worker", "broken", "reader", "p1"}
        assert agents["worker"]["hosted"]
        assert agents["worker"]["pid"] == os.getpid()
        assert agents["worker"]["alive"]
        assert agents["reader"]["runtime"] is None
        assert agents["reader"]["unread"] == 2
        assert agents["broken"]["dead_letters"] == 1
        assert agents["broken"]["restarts"] == 0  # max_attempts 1: dead-lettered without a restart
        table = await cli(dsn, "agents", "list")
        assert table.exit_code == 0
        assert "stranger" in table.stdout
        assert f"pid {os.getpid()}" in table.stdout
        assert "error: organization 'nope' not found" in one_line_error(
            await cli(dsn, "agents", "list", "--org", "nope")
        )

        # messages list
        listed = ok_json(await cli(dsn, "messages", "list", "--agent", "reader", "--unread", "--json"))
        assert [m["payload"]["text"] for m in listed] == ["from worker", "read me"]
        assert all(m["state"] == "unread" for m in listed)
        only = ok_json(await cli(dsn, "messages", "list", "--agent", "reader", "--from", "boss", "--json"))
        assert [m["from"] for m in only] == ["boss"]
        assert len(ok_json(await cli(dsn, "messages", "list", "--agent", "reader", "--limit", "1", "--json"))) == 1
        assert ok_json(await cli(dsn, "messages", "list", "--agent", "worker", "--json"))[0]["state"] == "handled"
        text = await cli(dsn, "messages", "list", "--agent", "reader")
        assert text.exit_code == 0
        assert "read me" in text.stdout
        assert "agent 'ghost' not found" in one_line_error(await cli(dsn, "messages", "list", "--agent", "ghost"))
        one_line_error(await cli(dsn, "messages", "list", "--agent", "reader", "--limit", "0"), 2)
        assert (await cli(dsn, "messages", "list")).exit_code == 2  # --agent is required

        # meetings
        meetings = ok_json(await cli(dsn, "meetings", "list", "--json"))
        assert [m["meeting_id"] for m in meetings] == [meeting]
        assert meetings[0]["state"] == "ended"
        assert ok_json(await cli(dsn, "meetings", "list", "--active", "--json")) == []
        shown = ok_json(await cli(dsn, "meetings", "show", meeting, "--json"))
        types = [e["type"] for e in shown["events"]]
        assert "meeting_started" in types
        assert types[-1] == "meeting_ended"
        spoken = [e["message"]["text"] for e in shown["events"] if e["type"] == "agent_spoke"]
        assert spoken[:2] == ["opening", "p1 speaks"]
        transcript = await cli(dsn, "meetings", "show", meeting, "--follow")  # ended: prints and returns
        assert transcript.exit_code == 0
        assert "p1: " in transcript.stdout
        assert "meeting ended" in transcript.stdout
        one_line_error(await cli(dsn, "meetings", "show", "not-a-uuid"), 2)
        missing = "00000000-0000-0000-0000-000000000000"
        assert "not found" in one_line_error(await cli(dsn, "meetings", "show", missing))

        # dead letters
        dead = ok_json(await cli(dsn, "dead-letters", "list", "--agent", "broken", "--json"))
        assert len(dead) == 1
        assert "boom" in dead[0]["error"]
        assert dead[0]["payload"] == {"text": "this fails"}
        assert ok_json(await cli(dsn, "dead-letters", "list", "--agent", "worker", "--json")) == []
        fixed = True  # the operator fixed the handler; a retry from the CLI reaches the live runtime
        retried = ok_json(await cli(dsn, "dead-letters", "retry", str(dead[0]["id"]), "--json"))
        assert retried["agent"] == "broken"
        assert retried["requeued"]
        with anyio.fail_after(20):
            await handled_after_retry.wait()
        assert ok_json(await cli(dsn, "dead-letters", "list", "--agent", "broken", "--json")) == []
        assert len(ok_json(await cli(dsn, "dead-letters", "list", "--all", "--json"))) == 1
        assert "not found" in one_line_error(await cli(dsn, "dead-letters", "retry", str(dead[0]["id"])))
        assert (await cli(dsn, "dead-letters", "retry", "abc")).exit_code == 2


async def test_meetings_show_follow_streams_until_the_end(runtime_config: Config, dsn: str) -> None:
    am = AgentMessaging[Any](runtime_config)
    async with am:
        await am.register_organization("acme", "Acme")
        for name in ("boss", "p1"):
            await am.register_agent(name, "acme", name)
        meeting = await am.meeting.create_meeting("boss", ["p1"])
        result: list[Result] = []

        async def follow() -> None:
            result.append(await cli(dsn, "meetings", "show", str(meeting), "--follow"))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await anyio.sleep(1.0)  # the follower is polling a meeting that has not started
                await am.meeting.end_meeting("boss", meeting, message={"text": "live end"})
        [done] = result
        assert done.exit_code == 0, done.output
        lines = done.stdout.strip().splitlines()
        assert lines[0].startswith(f"meeting {meeting}: created")
        assert "agent joined: boss" in done.stdout
        assert "meeting ended" in lines[-1]
        assert "live end" in lines[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["agents", "list"],
        ["messages", "list", "--agent", "a"],
        ["meetings", "list"],
        ["meetings", "show", "00000000-0000-0000-0000-000000000000"],
        ["dead-letters", "list"],
        ["dead-letters", "retry", "1"],
    ],
)
def test_unreachable_database_is_one_line_error(args: list[str]) -> None:
    line = one_line_error(invoke(UNREACHABLE, *args))
    assert "s3cr3t-pw" not in line
