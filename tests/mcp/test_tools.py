"""The MCP server over stdio: its tools and their schemas, notes, calls, concurrency, refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from tests.mcp.conftest import STEP, call, refused

TOOLS = {
    "list_agents",
    "send_note",
    "call_agent",
    "reply",
    "read_messages",
    "wait_for_message",
    "create_meeting",
    "attend_meeting",
    "start_meeting",
    "speak",
    "pass_turn",
    "leave_meeting",
    "end_meeting",
    "meeting_status",
    "meeting_history",
}


async def register(config: Config) -> None:
    """acme: alice, bob, carol; globex: mallory."""
    async with AgentMessaging[Any](config) as am:
        await am.register_organization("acme", "Acme")
        await am.register_organization("globex", "Globex")
        for name in ("alice", "bob", "carol"):
            await am.register_agent(name, "acme", name.title(), metadata={"role": f"{name}'s role"})
        await am.register_agent("mallory", "globex", "Mallory")


async def test_tools_have_names_schemas_and_descriptions_for_a_model(
    config: Config, connect: Callable[..., Any]
) -> None:
    await register(config)
    async with connect("alice") as client:
        with anyio.fail_after(STEP):
            listed = (await client.list_tools()).tools
        tools = {tool.name: tool for tool in listed}
        assert set(tools) == TOOLS
        for tool in listed:
            assert len(tool.description or "") > 30, tool.name
            assert "as_agent" not in tool.input_schema.get("properties", {})  # one agent: implied
            for name, prop in tool.input_schema.get("properties", {}).items():
                assert prop.get("description"), f"{tool.name}.{name} has no description"
        schema = tools["call_agent"].input_schema
        assert schema["required"] == ["to", "message"]
        assert schema["properties"]["timeout"]["default"] == 10  # --max-wait 10
        assert "at most 10" in schema["properties"]["timeout"]["description"]
        assert schema["properties"]["message"].get("type") is None  # untyped runtime: text or any JSON value
        assert tools["read_messages"].input_schema["properties"]["limit"]["maximum"] == 100
        assert tools["meeting_history"].annotations is not None
        assert tools["meeting_history"].annotations.read_only_hint is True

        agents = await call(client, "list_agents")
        assert agents["you"] == "alice"
        assert [(a["id"], a["metadata"]["role"]) for a in agents["agents"]] == [
            ("bob", "bob's role"),
            ("carol", "carol's role"),
        ]


async def test_notes_calls_and_replies_between_two_agents_of_one_server(
    config: Config, connect: Callable[..., Any]
) -> None:
    await register(config)
    async with connect("alice", "carol") as client:
        schema = {t.name: t.input_schema for t in (await client.list_tools()).tools}
        assert all("as_agent" in s["required"] for s in schema.values())  # several agents: say which

        sent = await call(client, "send_note", as_agent="alice", to=["carol", "bob"], message={"fyi": "lunch at 1"})
        assert sent["to"] == ["carol", "bob"]
        read = await call(client, "read_messages", as_agent="carol")
        [note] = read["messages"]
        assert (note["from"], note["kind"], note["message"]) == ("alice", "one_way", {"fyi": "lunch at 1"})
        assert (await call(client, "read_messages", as_agent="carol"))["messages"] == []

        # alice's call waits; meanwhile the same server answers other tool calls (carol reads and replies)
        answers: list[Any] = []

        async def alice_calls() -> None:
            answers.append(await call(client, "call_agent", as_agent="alice", to="carol", message="ready?", timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(alice_calls)
            request = await call(client, "wait_for_message", as_agent="carol", from_agent="alice", timeout=10)
            assert request["kind"] == "request"
            assert "reply" in request["note"]
            await call(client, "reply", as_agent="carol", to="alice", message="yes", request_id=request["id"])
        assert answers == [{"from": "carol", "answer": "yes"}]


async def test_refusals_are_tool_errors_that_say_what_to_do(config: Config, connect: Callable[..., Any]) -> None:
    await register(config)
    async with AgentMessaging[Any](config) as am:
        theirs = await am.meeting.create_meeting("bob", ["carol"])
    async with connect("alice", "carol") as client:
        # another agent's mailbox
        text = await refused(client, "read_messages", as_agent="bob")
        assert "acts only as 'alice', 'carol'" in text
        assert "Set as_agent to one of them" in text
        # a meeting alice is not in
        for tool in ("meeting_status", "meeting_history", "attend_meeting"):
            text = await refused(client, tool, as_agent="alice", meeting_id=str(theirs))
            assert "'alice' does not take part in meeting" in text
        # another organization
        text = await refused(client, "send_note", as_agent="alice", to="mallory", message="psst")
        assert "CrossOrganization" in text
        assert "list_agents" in text
        # an unknown agent
        text = await refused(client, "call_agent", as_agent="alice", to="nobody", message="hello?")
        assert "AgentNotFound: agent 'nobody' not found" in text
        assert "Call list_agents" in text
        # a call nobody answers: bounded, and the model learns where a late answer goes
        text = await refused(client, "call_agent", as_agent="alice", to="bob", message="hi", timeout=0.2)
        assert "ReplyTimeout" in text
        assert "read_messages" in text
        # bad arguments and bad ids
        assert "message" in await refused(client, "send_note", as_agent="alice", to="bob")
        assert "meeting_id must be a UUID" in await refused(
            client, "meeting_status", as_agent="alice", meeting_id="tomorrow"
        )
        text = await refused(client, "wait_for_message", as_agent="alice", timeout=-1)
        assert "timeout" in text
        assert "greater than 0" in text
    async with connect("ghost") as client:
        text = await refused(client, "list_agents")
        assert "You act as 'ghost', which is not a registered agent" in text
