"""The MCP server with other processes: an agent hosted by ``agent-messaging run``, and the HTTP transport."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp.conftest import STEP, Child, call, refused, text_of

RUN_APP = "tests.runtime._run_app:am"  # organization ops: worker (hosted, answers calls), client, chair, p1, p2


async def start_run(spawn: Callable[..., Child], backend: str) -> Child:
    """``agent-messaging run`` hosting the test app; returns once it serves (its setup registered the agents)."""
    child = spawn("-m", "agent_messaging", "run", RUN_APP, "--backend", backend, "--log-level", "warning")
    await child.line(f"agent-messaging run {RUN_APP}:")
    return child


async def test_a_call_answered_by_an_agent_hosted_by_agent_messaging_run(
    spawn: Callable[..., Child], connect: Callable[..., Any], anyio_backend: str
) -> None:
    await start_run(spawn, anyio_backend)
    async with connect("client") as client:
        answer = await call(client, "call_agent", to="worker", message={"n": 7}, timeout=10)
        assert answer == {"from": "worker", "answer": {"n": 7}}
        notes = await call(client, "send_note", to="worker", message={"n": 8})
        assert len(notes["sent"]) == 1
        agents = {a["id"] for a in (await call(client, "list_agents"))["agents"]}
        assert agents == {"worker", "chair", "p1", "p2"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_streamable_http(spawn: Callable[..., Child]) -> None:
    """One run: the HTTP server is uvicorn (asyncio), and the SDK's HTTP client leaks async generators on trio."""
    anyio.run(http_session, spawn, backend="asyncio")


async def http_session(spawn: Callable[..., Child]) -> None:
    await start_run(spawn, "asyncio")  # registers the agents
    port = free_port()
    server = spawn(
        "-m", "agent_messaging", "mcp", "--agent", "client", "--agent", "chair", "--http", f"127.0.0.1:{port}"
    )
    line = await server.line("agent-messaging mcp:")
    assert f"acting as client, chair; serving on http://127.0.0.1:{port}/mcp" in line
    with anyio.fail_after(STEP):
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            assert len((await client.list_tools()).tools) == 15
            await call(client, "send_note", as_agent="client", to="chair", message="over HTTP")
            [note] = (await call(client, "read_messages", as_agent="chair"))["messages"]
            assert (note["from"], note["message"]) == ("client", "over HTTP")
            answer = await call(client, "call_agent", as_agent="chair", to="worker", message={"n": 1})
            assert answer["answer"] == {"n": 1}
    server.proc.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(server.proc.wait, STEP) == 0


async def test_a_meeting_of_two_agents_of_one_server(connect: Callable[..., Any], spawn: Callable[..., Child]) -> None:
    """chair hosts, client takes part: attend, start, speak, pass, status, history, leave, end — all as tools."""
    await start_run(spawn, "asyncio")  # registers the agents (its hosted p1/p2 are not in this meeting)
    async with connect("chair", "client") as client:
        created = await call(client, "create_meeting", as_agent="chair", participants=["client"], turn_duration=30)
        meeting = created["meeting_id"]
        assert "attend_meeting" in created["note"]
        waiting = await call(client, "attend_meeting", as_agent="client", meeting_id=meeting, wait=0.2)
        assert waiting["your_turn"] is False
        assert "call attend_meeting to keep waiting" in waiting["note"]

        # the chair opens; the floor goes to the client, whose next attend returns its turn at once
        opened = await call(client, "start_meeting", as_agent="chair", meeting_id=meeting, message="agenda", wait=0.2)
        assert opened["your_turn"] is False
        turn = await call(client, "attend_meeting", as_agent="client", meeting_id=meeting, wait=5)
        assert turn["your_turn"] is True
        assert turn["turn_number"] == 1
        assert turn["deadline"] is not None
        assert [(m["agent"], m.get("message")) for m in turn["messages"] if m["type"] == "agent_spoke"] == [
            ("chair", "agenda")
        ]
        status = await call(client, "meeting_status", as_agent="chair", meeting_id=meeting)
        assert (status["state"], status["floor_holder"]) == ("active", "client")
        not_yet = await refused(client, "speak", as_agent="chair", meeting_id=meeting, message="me!")
        assert "NotYourTurn" in not_yet
        assert "attend_meeting" in not_yet

        # client speaks and waits for its next turn while the chair takes its own (concurrent tool calls)
        replies: list[Any] = []

        async def client_speaks() -> None:
            replies.append(await call(client, "speak", as_agent="client", meeting_id=meeting, message="idea", wait=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(client_speaks)
            chair_turn = await call(client, "attend_meeting", as_agent="chair", meeting_id=meeting, wait=10)
            assert [m.get("message") for m in chair_turn["messages"] if m["type"] == "agent_spoke"][-1] == "idea"
            await call(client, "pass_turn", as_agent="chair", meeting_id=meeting, wait=0.1)
        assert replies[0]["your_turn"] is True

        await call(client, "leave_meeting", as_agent="client", meeting_id=meeting)  # holds the floor: at once
        ended = await call(client, "end_meeting", as_agent="chair", meeting_id=meeting, message="thanks")
        assert ended == {"meeting_id": meeting, "ended": True}
        history = await call(client, "meeting_history", as_agent="client", meeting_id=meeting)
        types = [e["type"] for e in history["events"]]
        assert types[-3:] == ["agent_left", "turn_changed", "meeting_ended"]
        assert [e.get("message") for e in history["events"] if e["type"] == "agent_spoke"] == ["agenda", "idea"]


async def test_an_mcp_participant_takes_turns_with_agents_hosted_by_another_process(
    spawn: Callable[..., Child], connect: Callable[..., Any], anyio_backend: str
) -> None:
    await start_run(spawn, anyio_backend)  # hosts p1 and p2, whose turn handlers say {"said": agent, "turn": n}
    async with connect("chair") as client:
        created = await call(client, "create_meeting", participants=["p1", "p2"], turn_duration=5)
        meeting = created["meeting_id"]
        # p1 and p2 attend by themselves, from their own process; the chair opens once they are present
        opened: dict[str, Any] = {}
        with anyio.move_on_after(5):
            while not opened:
                result = await client.call_tool(
                    "start_meeting", {"meeting_id": meeting, "message": {"agenda": "plan"}, "wait": 10}
                )
                if not result.is_error:
                    opened = json.loads(text_of(result))
                elif "MeetingNotReady" in text_of(result):
                    await anyio.sleep(0.2)
                else:
                    raise AssertionError(text_of(result))
        assert opened, "p1 and p2 never attended"
        assert opened["your_turn"] is True
        spoken = [(m["agent"], m["message"]) for m in opened["messages"] if m["type"] == "agent_spoke"]
        assert spoken == [
            ("chair", {"agenda": "plan"}),
            ("p1", {"said": "p1", "turn": 1}),
            ("p2", {"said": "p2", "turn": 2}),
        ]
        second = await call(client, "speak", meeting_id=meeting, message={"next": "round 2"}, wait=10)
        assert [m["agent"] for m in second["messages"] if m["type"] == "agent_spoke"] == ["chair", "p1", "p2"]
        await call(client, "end_meeting", meeting_id=meeting, message={"done": True})
        history = await call(client, "meeting_history", meeting_id=meeting)
        speakers = [e["agent"] for e in history["events"] if e["type"] == "agent_spoke"]
        assert speakers == ["chair", "p1", "p2", "chair", "p1", "p2"]
