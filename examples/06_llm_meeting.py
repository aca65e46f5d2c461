"""A product review run by LLM agents: a facilitator hosts, a planner proposes, a critic pushes back.

The planner and the critic are ``LLMAgent`` s: hosted agents whose meeting
turns come from a pydantic-ai agent. The critic has the messaging operations
as tools, so during its turn it *calls* a fourth LLM agent, the analyst, to
check a figure (an agent-to-agent call made as a tool call). The facilitator
is the meeting's host, driven by this script with its own pydantic-ai agent:
it opens, steers the second round, and closes with a summary. The transcript
is printed from the meeting's history, then the critic's side call.

By default every model is a scripted ``FunctionModel``: the example runs
offline, with no API key. To use a real model, name it in an environment
variable (any model pydantic-ai knows, with its provider's key set)::

    AGENT_MESSAGING_LLM_MODEL=openai:gpt-4o python examples/06_llm_meeting.py

Run it with ``python examples/06_llm_meeting.py`` (extra ``[llm]``): with no
AGENT_MESSAGING_DSN set it starts the embedded PostgreSQL in
``.agent-messaging/pgdata``. It registers fresh agent ids on every run, so it
runs any number of times on the same database.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any

import anyio
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_messaging import AgentMessaging, AlreadyExists, Config, MeetingEventType
from agent_messaging.llm import LLMAgent

ORG = "example-review"
run = uuid.uuid4().hex[:6]  # fresh agent ids on every run
FACILITATOR, PLANNER, CRITIC, ANALYST = (f"{role}-{run}" for role in ("facilitator", "planner", "critic", "analyst"))
REAL_MODEL = os.environ.get("AGENT_MESSAGING_LLM_MODEL")

ROLES = {
    "facilitator": "You facilitate a product review. Keep it short and concrete.",
    "planner": "You are the product planner. Propose a concrete plan; revise it when criticised.",
    "critic": (
        f"You are the critic. Check claims with the analyst (agent {ANALYST!r}, via call_agent) when numbers matter. "
        "When you have nothing to add, answer PASS."
    ),
    "analyst": "You are the data analyst. Answer questions with one figure and its source.",
}


# ------------------------------------------------------------------ scripted models (offline)


def scripted(lines: list[str]) -> FunctionModel:
    """A model that says ``lines`` one after the other (then the last one again)."""
    said = 0

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal said
        said += 1
        return ModelResponse(parts=[TextPart(lines[min(said, len(lines)) - 1])])

    return FunctionModel(model)


def scripted_critic() -> FunctionModel:
    """First turn: ask the analyst (a tool call), then object with its figure. Later turns: PASS."""
    turns = 0

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal turns
        answers: list[Any] = [p.content for p in messages[-1].parts if isinstance(p, ToolReturnPart)]
        if answers:
            figure = answers[0].get("answer") or answers[0].get("error")
            line = f"Offline mode is worth it; the analyst says: {figure} But a redesign in the same quarter is risky."
            return ModelResponse(parts=[TextPart(line)])
        turns += 1
        if turns == 1:
            question = {"to": ANALYST, "message": "How many sessions start offline?"}
            return ModelResponse(parts=[ToolCallPart("call_agent", question)])
        return ModelResponse(parts=[TextPart("PASS")])

    return FunctionModel(model)


def model_for(role: str) -> Any:
    """The real model if one is named, else the role's scripted one."""
    if REAL_MODEL:
        return REAL_MODEL
    return {
        "facilitator": scripted(
            [
                "Welcome. Today: the Q3 roadmap. Planner, what do we ship?",
                "Planner, please answer the critic's concern about doing both in Q3.",
                "Summary: offline mode ships in Q3, the redesign moves to Q4. Thanks all.",
            ]
        ),
        "planner": scripted(
            [
                "Proposal: ship the app redesign and offline mode together in Q3.",
                "Revised: offline mode first, in Q3; the redesign follows in Q4.",
            ]
        ),
        "critic": scripted_critic(),
        "analyst": scripted(["About 18% of sessions start offline (app telemetry, last 90 days)."]),
    }[role]


def llm(role: str) -> PydanticAgent[None, str]:
    return PydanticAgent(model_for(role), instructions=ROLES[role])


# ------------------------------------------------------------------ the review

am = AgentMessaging[str](Config())
am.host(PLANNER, LLMAgent(llm("planner")))
am.host(CRITIC, LLMAgent(llm("critic")))
am.host(ANALYST, LLMAgent(llm("analyst")))


async def facilitate(facilitator: PydanticAgent[None, str], meeting: uuid.UUID, goal: str) -> str:
    """The facilitator's next line, from its model, given the transcript so far."""
    history = await am.meeting.get_meeting_history(meeting)
    transcript = "\n".join(f"{e.agent}: {e.message}" for e in history if e.type is MeetingEventType.AGENT_SPOKE)
    result = await facilitator.run(f"Transcript so far:\n{transcript or '(nothing yet)'}\n\nYour next line: {goal}")
    return result.output


async def main() -> None:
    facilitator = llm("facilitator")
    async with am:
        with contextlib.suppress(AlreadyExists):  # already there from an earlier run
            await am.register_organization(ORG, "Example Review")
        for name in (FACILITATOR, PLANNER, CRITIC, ANALYST):
            await am.register_agent(name, ORG, name.split("-")[0].title())
        meeting = await am.meeting.create_meeting(FACILITATOR, [PLANNER, CRITIC], turn_duration=60)
        with anyio.fail_after(300):
            opening = await facilitate(facilitator, meeting, "open the review")
            await am.meeting.start_meeting(FACILITATOR, meeting, opening)  # planner, then critic, then back here
            follow_up = await facilitate(facilitator, meeting, "steer the second round")
            await am.meeting.speak(FACILITATOR, meeting, follow_up)
            summary = await facilitate(facilitator, meeting, "close with a one-line summary")
            await am.meeting.end_meeting(FACILITATOR, meeting, message=summary)
        print_transcript(meeting, await am.meeting.get_meeting_history(meeting))
        side = await am.conversation.get_conversation_history(CRITIC, ANALYST)
        print("\nThe critic's call to the analyst (made as a tool call during its turn):")
        for message in side:
            print(f"  {short(message.sender)} -> {short(message.recipient)}: {message.payload}")


def short(agent: str | None) -> str:
    return (agent or "").removesuffix(f"-{run}")


def print_transcript(meeting: uuid.UUID, history: list[Any]) -> None:
    print(f"Product review {meeting} ({'model ' + REAL_MODEL if REAL_MODEL else 'scripted models, offline'}):")
    for event in history:
        who = short(event.agent)
        if event.type is MeetingEventType.AGENT_SPOKE:
            print(f"  {event.seq:3} {who}: {event.message}")
        elif event.type is MeetingEventType.TURN_CHANGED and event.data.get("reason") == "passed":
            print(f"  {event.seq:3} [pass] {short(event.data.get('from'))} passed")
        elif event.type is MeetingEventType.AGENT_TIMED_OUT:
            print(f"  {event.seq:3} [timeout] {who} did not answer in time")
        elif event.type is MeetingEventType.MEETING_ENDED:
            print(f"  {event.seq:3} [end] {who} ended the meeting: {event.message}")


if __name__ == "__main__":
    anyio.run(main)
