"""``AgentSession``: every operation as one agent, bounded waits, and refusals that say what to do."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import (
    AgentMessaging,
    AgentNotFound,
    AgentSession,
    CrossOrganization,
    HandlerError,
    InvalidArgument,
    InvalidOperation,
    MeetingNotFound,
    MessageContext,
    NotYourTurn,
    ReplyTimeout,
    Turn,
    WaitTimeout,
)
from agent_messaging._acting import explain
from agent_messaging._app import internals
from agent_messaging.models import MeetingEventType
from tests._helpers import eventually

AM = AgentMessaging[Any]


async def setup(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    await am.register_organization("globex", "Globex")
    for name in ("alice", "bob", "carol", "quiet"):
        await am.register_agent(name, "acme", name.title(), metadata={"role": name})
    await am.register_agent("mallory", "globex", "Mallory")


async def test_notes_calls_replies_and_reading_are_made_as_the_agent(am: AM) -> None:
    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> Any:
        return f"bob answers {ctx.sender}: {message}"

    await setup(am)
    alice = AgentSession(am, "alice", max_wait=5)
    carol = AgentSession(am, "carol", max_wait=5)

    assert await alice.call("bob", "ping") == "bob answers alice: ping"
    [note] = await alice.send_note("carol", {"fyi": 1})
    [got] = await carol.read_messages()
    assert (got.id, got.sender, got.recipient, got.payload) == (note, "alice", "carol", {"fyi": 1})
    assert await carol.read_messages() == []  # claimed once

    # carol answers a call of alice's with reply(); alice's call returns it
    async def answer() -> None:
        request = await carol.wait_for_message(from_agent="alice")
        assert request.kind.value == "request"
        await carol.reply("alice", f"carol got {request.payload}", request_id=str(request.id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(answer)
        assert await alice.call("carol", "question") == "carol got question"

    assert sorted(a.external_id for a in await alice.list_agents()) == ["bob", "carol", "quiet"]
    assert (await alice.me()).organization_external_id == "acme"


async def test_waits_are_bounded_by_max_wait(am: AM) -> None:
    await setup(am)
    alice = AgentSession(am, "alice", max_wait=0.3)
    with anyio.fail_after(5):
        with pytest.raises(ReplyTimeout) as timed_out:
            await alice.call("quiet", "anyone?", timeout=3600)  # capped at 0.3 s
        assert timed_out.value.timeout == pytest.approx(0.3)
        with pytest.raises(WaitTimeout):
            await alice.wait_for_message(timeout=3600)
    assert "call read_messages or wait_for_message" in explain(timed_out.value)
    # the late answer lands in alice's unread messages
    await AgentSession(am, "quiet").reply("alice", "sorry, late")
    [late] = await alice.read_messages()
    assert (late.kind.value, late.payload) == ("reply", "sorry, late")
    for bad in (0, -1, float("nan"), True, "10"):
        with pytest.raises(InvalidArgument, match="positive number of seconds"):
            await alice.call("quiet", "x", timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="from 1 to 100"):
        await alice.read_messages(limit=1000)
    with pytest.raises(InvalidArgument, match="max_wait"):
        AgentSession(am, "alice", max_wait=0)


async def test_a_failing_handler_comes_back_as_an_error_to_act_on(am: AM) -> None:
    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> Any:
        raise InvalidArgument("bob cannot parse that")  # one of ours: answered at once, not retried

    await setup(am)
    alice = AgentSession(am, "alice", max_wait=5)
    with anyio.fail_after(5), pytest.raises(HandlerError) as failed:
        await alice.call("bob", "???")
    text = explain(failed.value, "alice")
    assert "InvalidArgument: bob cannot parse that" in text
    assert text.endswith("try again later, or ask differently.")


async def test_refusals_name_the_problem_and_what_to_do(am: AM) -> None:
    await setup(am)
    alice = AgentSession(am, "alice")
    with pytest.raises(CrossOrganization) as cross:
        await alice.send_note("mallory", "psst")
    assert "call list_agents" in explain(cross.value, "alice")
    with pytest.raises(AgentNotFound) as unknown:
        await alice.call("nobody", "hello?")
    assert explain(unknown.value, "alice").endswith("Call list_agents to see the agents you can message.")
    ghost = AgentSession(am, "ghost")
    with pytest.raises(AgentNotFound) as unregistered:
        await ghost.list_agents()
    assert "You act as 'ghost', which is not a registered agent" in explain(unregistered.value, "ghost")
    assert all(a.external_id != "mallory" for a in await alice.list_agents())

    # a meeting alice is not in: no status, history or operation
    meeting = await AgentSession(am, "bob").create_meeting(["carol"])
    for attempt in (
        alice.meeting_status(meeting),
        alice.meeting_history(meeting),
        alice.attend_meeting(meeting, wait=0.1),
        alice.speak(meeting, "let me in"),
        alice.end_meeting(meeting),
    ):
        with pytest.raises(InvalidOperation, match="does not take part in meeting") as refused:
            await attempt
        assert "only its host and participants" in explain(refused.value, "alice")
    # nor across organizations (the same refusal: it tells nothing about the meeting)
    with pytest.raises(InvalidOperation, match="does not take part"):
        await AgentSession(am, "mallory").meeting_history(meeting)
    with pytest.raises(MeetingNotFound) as missing:
        await alice.meeting_status("00000000-0000-0000-0000-000000000000")
    assert "create_meeting returns it" in explain(missing.value)


async def test_meetings_with_bounded_turns_and_complete_messages(am: AM) -> None:
    @am.register_turn_handler("bob")
    async def bob(turn: Turn[Any]) -> Any:
        return f"bob's view at turn {turn.turn_number}"

    await setup(am)
    alice = AgentSession(am, "alice", max_wait=5)
    carol = AgentSession(am, "carol", max_wait=5)
    meeting = await alice.create_meeting(["bob", "carol"])

    # carol attends: her turn has not come (None), but she is present now and alice can start
    turns: list[Turn[Any] | None] = [await carol.attend_meeting(meeting, wait=0.1)]

    async def carol_attends() -> None:
        turns.append(await carol.attend_meeting(meeting))  # her turn, after bob's

    async with anyio.create_task_group() as tg:
        tg.start_soon(carol_attends)
        # the opening goes to bob (hosted), then carol; alice's wait for her next turn is cut short
        assert await alice.start_meeting(meeting, "agenda: lunch", wait=0.05) is None
    assert turns[0] is None
    carol_turn = turns[1]
    assert carol_turn is not None
    assert carol_turn.agent == "carol"
    spoken = [(e.agent, e.message) for e in carol_turn.messages if e.type is MeetingEventType.AGENT_SPOKE]
    assert spoken == [("alice", "agenda: lunch"), ("bob", "bob's view at turn 1")]
    with pytest.raises(NotYourTurn) as not_yours:
        await alice.speak(meeting, "me again")
    assert "attend_meeting" in explain(not_yours.value)

    # carol speaks; the floor goes back to alice, whose turn has everything since she last looked
    assert await carol.speak(meeting, "pizza", wait=0.05) is None
    alice_turn = await alice.attend_meeting(meeting)
    assert alice_turn is not None
    assert alice_turn.agent == "alice"
    assert [(e.agent, e.message) for e in alice_turn.messages if e.type is MeetingEventType.AGENT_SPOKE] == [
        ("alice", "agenda: lunch"),
        ("bob", "bob's view at turn 1"),
        ("carol", "pizza"),
    ]
    ended: list[Turn[Any] | None] = []

    abandoned = internals(am).runners.handles[meeting].seats["carol"].waiter

    async def carol_waits() -> None:
        ended.append(await carol.attend_meeting(meeting))

    async with anyio.create_task_group() as tg:
        tg.start_soon(carol_waits)
        # carol waits (her abandoned wait from speak() is replaced by this one)
        await eventually(lambda: internals(am).runners.handles[meeting].seats["carol"].waiter not in (None, abandoned))
        await alice.end_meeting(meeting, message="pizza it is")
    [last] = ended
    assert last is not None
    assert last.ended
    assert last.ending_message == "pizza it is"
    # what carol had not seen yet: her own line since her last turn, and the end
    E = MeetingEventType
    assert [(e.type, e.agent) for e in last.messages] == [(E.AGENT_SPOKE, "carol"), (E.MEETING_ENDED, "alice")]
    history = await carol.meeting_history(meeting)
    assert history[-1].type is MeetingEventType.MEETING_ENDED
    assert (await carol.meeting_status(meeting)).state.value == "ended"
