"""``LLMAgent``: hosted agents whose answers come from pydantic-ai models (scripted, offline: ``FunctionModel``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_messaging import AgentMessaging, Config, HandlerError
from agent_messaging.llm import LLMAgent
from agent_messaging.models import MeetingEventType

AM = AgentMessaging[Any]
E = MeetingEventType


async def register(am: AM, *names: str) -> None:
    await am.register_organization("acme", "Acme")
    for name in names:
        await am.register_agent(name, "acme", name.title())


def prompts(messages: list[ModelMessage]) -> list[str]:
    """Every user-prompt text the model was given, oldest first."""
    return [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]


def said(messages: list[ModelMessage]) -> list[str]:
    """What the model itself said earlier (its text turns in the history)."""
    return [
        part.content for m in messages if isinstance(m, ModelResponse) for part in m.parts if isinstance(part, TextPart)
    ]


def tool_results(messages: list[ModelMessage]) -> list[Any]:
    return [part.content for part in messages[-1].parts if isinstance(part, ToolReturnPart)]


async def test_a_call_is_answered_by_the_model_with_the_recent_history_of_the_pair(am: AM) -> None:
    seen: list[tuple[list[str], list[str], str | None]] = []

    def analyst(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append((prompts(messages), said(messages), info.instructions))
        return ModelResponse(parts=[TextPart(f"answer #{len(seen)}")])

    am.host("analyst", LLMAgent(PydanticAgent(FunctionModel(analyst), instructions="You analyse."), history=3))
    await register(am, "alice", "analyst")
    await am.one_way.send("alice", "analyst", "context: the budget is 10")  # a note: the model runs, nothing is sent
    assert await am.conversation.send_and_wait("alice", "analyst", "what is the budget?", timeout=10) == "answer #2"
    assert await am.conversation.send_and_wait("alice", "analyst", {"q": "and now?"}, timeout=10) == "answer #3"

    note_prompts, _, instructions = seen[0]
    assert note_prompts[-1].startswith("alice sends you a note")
    assert instructions is not None
    assert "You analyse." in instructions
    assert "'analyst' (Analyst) of organization 'acme'" in instructions
    # the first call sees the note as history; the second sees (history=3) the note, the first call and its answer
    call_prompts, call_said, _ = seen[1]
    assert call_prompts == [
        "[alice, one_way] context: the budget is 10",
        "alice calls you and waits for your answer (what you answer now is sent back):\nwhat is the budget?",
    ]
    assert call_said == []
    last_prompts, last_said, _ = seen[2]
    assert last_prompts[:2] == ["[alice, one_way] context: the budget is 10", "[alice, request] what is the budget?"]
    assert last_prompts[-1].endswith('{"q": "and now?"}')
    assert last_said == ["answer #2"]


async def test_an_llm_agent_calls_another_agent_through_a_tool(config: Config) -> None:
    am = AgentMessaging[Any](config.model_copy(update={"default_reply_timeout": 10}))

    def planner(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        results = tool_results(messages)
        if not results:  # first step: list the agents, then call the critic and send a note to alice
            assert {tool.name for tool in info.function_tools} == {
                "list_agents",
                "send_note",
                "call_agent",
                "meeting_status",
                "meeting_history",
            }
            return ModelResponse(
                parts=[
                    ToolCallPart("call_agent", {"to": "critic", "message": "review: ship on Friday"}),
                    ToolCallPart("send_note", {"to": "alice", "message": "asking the critic"}),
                    ToolCallPart("call_agent", {"to": "mallory", "message": "psst"}),
                ]
            )
        return ModelResponse(parts=[TextPart(f"the critic says: {results[0]['answer']}; refused: {results[2]}")])

    def critic(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        results = tool_results(messages)
        if not results:  # calls back the planner, which is waiting for it: a deadlock, refused at once
            return ModelResponse(parts=[ToolCallPart("call_agent", {"to": "planner", "message": "why Friday?"})])
        return ModelResponse(parts=[TextPart(f"too early ({results[0]['error'].split(':')[0]})")])

    am.host("planner", LLMAgent(PydanticAgent(FunctionModel(planner))))
    am.host("critic", LLMAgent(PydanticAgent(FunctionModel(critic))))
    async with am:
        await register(am, "alice", "planner", "critic")
        await am.register_organization("globex", "Globex")
        await am.register_agent("mallory", "globex", "Mallory")
        with anyio.fail_after(20):
            answer = await am.conversation.send_and_wait("alice", "planner", "plan the release")
        assert answer.startswith("the critic says: too early (DeadlockDetected); refused: ")
        assert "CrossOrganization" in answer
        assert "call list_agents" in answer
        [note] = await am.conversation.get_unread_messages("alice")
        assert (note.sender, note.payload) == ("planner", "asking the critic")


async def test_an_llm_meeting_of_three_agents_with_a_turn_timeout(am: AM) -> None:
    turns: dict[str, int] = {}
    heard: dict[str, list[str]] = {}

    def participant(name: str, lines: list[str | None], slow_first: bool = False) -> LLMAgent[Any]:
        async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            turns[name] = turns.get(name, 0) + 1
            heard[name] = prompts(messages)
            if slow_first and turns[name] == 1:
                await anyio.sleep(10)  # longer than the turn: the turn times out, the run is cancelled
            line = lines[(turns[name] - 1) % len(lines)]
            return ModelResponse(parts=[TextPart(line or "PASS")])

        return LLMAgent(PydanticAgent(FunctionModel(model)))

    am.host("optimist", participant("optimist", ["ship it", "still ship it"]))
    am.host("skeptic", participant("skeptic", [None], slow_first=True))
    am.host("scribe", participant("scribe", ["noted: ship it", "pass."]))
    await register(am, "host", "optimist", "skeptic", "scribe")
    meeting = await am.meeting.create_meeting("host", ["optimist", "skeptic", "scribe"], turn_duration=1.0)
    with anyio.fail_after(30):
        turn = await am.meeting.start_meeting("host", meeting, "Do we ship on Friday?")
        assert [(e.agent, e.message) for e in turn.messages if e.type is E.AGENT_SPOKE] == [
            ("optimist", "ship it"),
            ("scribe", "noted: ship it"),
        ]
        await am.meeting.speak("host", meeting, "Second round.")
        await am.meeting.end_meeting("host", meeting)
    history = await am.meeting.get_meeting_history(meeting)
    spoken = [(e.agent, e.message) for e in history if e.type is E.AGENT_SPOKE]
    assert spoken == [
        ("host", "Do we ship on Friday?"),
        ("optimist", "ship it"),
        ("scribe", "noted: ship it"),
        ("host", "Second round."),
        ("optimist", "still ship it"),
    ]
    assert [e.agent for e in history if e.type is E.AGENT_TIMED_OUT] == ["skeptic"]
    reasons = [(e.data["from"], e.data["reason"]) for e in history if e.type is E.TURN_CHANGED]
    assert ("skeptic", "timeout") in reasons
    assert ("skeptic", "passed") in reasons  # its second answer was PASS
    assert ("scribe", "passed") in reasons  # "pass." passes too
    # the scribe's model heard the opening, the optimist, the timeout; and its own line as its own turn
    assert heard["scribe"][:3] == [
        "[meeting] host opened the meeting",
        "[host] Do we ship on Friday?",
        "[optimist] ship it",
    ]
    assert "[meeting] skeptic did not speak within 1s; the floor moves on" in heard["scribe"]
    assert heard["scribe"][-1].startswith("It is your turn")


async def test_a_model_that_raises_fails_the_call_and_the_agent_keeps_running(config: Config) -> None:
    quick = {"max_attempts": 2, "restart_backoff_initial": 0.01, "restart_backoff_max": 0.05}
    am = AgentMessaging[Any](config.model_copy(update=quick))

    def moody(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if "explode" in prompts(messages)[-1]:
            raise RuntimeError("the model is down")
        return ModelResponse(parts=[TextPart("fine")])

    am.host("moody", LLMAgent(PydanticAgent(FunctionModel(moody)), history=0))
    async with am:
        await register(am, "alice", "moody")
        # retried (max_attempts), then the caller gets the model's error at once: no waiting out the timeout
        with anyio.fail_after(10), pytest.raises(HandlerError) as failed:
            await am.conversation.send_and_wait("alice", "moody", "explode, please", timeout=60)
        assert (failed.value.agent, failed.value.error_type) == ("moody", "RuntimeError")
        assert failed.value.error_message == "the model is down"
        assert "the model is down" in str(failed.value)
        assert await am.get_dead_letters("moody") == []  # answered with the error, not dead-lettered
        with anyio.fail_after(10):
            assert await am.conversation.send_and_wait("alice", "moody", "hello", timeout=10) == "fine"
