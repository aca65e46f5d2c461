"""Meetings: lifecycle, errors, timer, leave/end, selection, events, hosted participants (real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging
from agent_messaging._app import internals
from agent_messaging.errors import (
    AgentNotFound,
    CrossOrganization,
    InvalidArgument,
    InvalidMessage,
    InvalidOperation,
    MeetingEnded,
    MeetingNotFound,
    MeetingNotReady,
    NotHost,
    NotYourTurn,
    TurnTimedOut,
)
from agent_messaging.models import MeetingEvent, MeetingEventType, MeetingState, ParticipantStatus, Turn
from tests._helpers import attend_all

E = MeetingEventType
AM = AgentMessaging[Any]


def _async(fn: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return fn()

    return check


async def setup(am: AM, *names: str, org: str = "acme") -> None:
    await am.register_organization(org, org.title())
    for name in names:
        await am.register_agent(name, org, name.upper())


async def history_types(am: AM, mid: uuid.UUID) -> list[tuple[str, str | None]]:
    return [(e.type.value, e.agent) for e in await am.meeting.get_meeting_history(mid)]


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait until ``check()`` (a database read) is true."""
    with anyio.fail_after(seconds):
        while not await check():  # noqa: ASYNC110 - polls what other tasks commit
            await anyio.sleep(0.005)


async def wait_for_floor(am: AM, mid: uuid.UUID, agent: str) -> None:
    async def check() -> bool:
        return (await am.meeting.get_meeting_status(mid)).floor_holder == agent

    await until(check)


async def wait_for_history(am: AM, mid: uuid.UUID, count: int) -> None:
    async def check() -> bool:
        return len(await am.meeting.get_meeting_history(mid)) >= count

    await until(check)


async def test_full_lifecycle_with_imperative_participants(am: AM) -> None:
    await setup(am, "host", "a", "b")
    mid = await am.meeting.create_meeting("host", ["a", "b"])
    status = await am.meeting.get_meeting_status(mid)
    assert status.state is MeetingState.CREATED
    assert [(p.agent, p.status) for p in status.participants] == [
        ("host", ParticipantStatus.PRESENT),
        ("a", ParticipantStatus.INVITED),
        ("b", ParticipantStatus.INVITED),
    ]
    turns: dict[str, list[Turn[Any]]] = {"a": [], "b": []}

    async def participant(name: str, rounds: int) -> None:
        turn = await am.meeting.attend_meeting(name, mid)
        for i in range(rounds):
            turns[name].append(turn)
            assert not turn.ended
            turn = await am.meeting.speak(name, mid, f"{name}-{i}")
        turns[name].append(turn)

    async with anyio.create_task_group() as tg:
        tg.start_soon(participant, "a", 2)
        tg.start_soon(participant, "b", 2)
        await wait_for_history(am, mid, 3)
        turn = await am.meeting.start_meeting("host", mid, "welcome")
        assert [(m.agent, m.message) for m in turn.messages if m.type is E.AGENT_SPOKE] == [("a", "a-0"), ("b", "b-0")]
        assert turn.turn_number == 3
        turn = await am.meeting.speak("host", mid, "round two")
        assert [m.message for m in turn.messages if m.type is E.AGENT_SPOKE] == ["a-1", "b-1"]
        await am.meeting.end_meeting("host", mid, message="bye")
    # a's first turn saw the opening; its last call woke with the end
    assert [m.message for m in turns["a"][0].messages if m.type is E.AGENT_SPOKE] == ["welcome"]
    assert turns["a"][0].turn_number == 1
    assert turns["b"][0].turn_number == 2
    for name in ("a", "b"):
        last = turns[name][-1]
        assert last.ended
        assert last.ending_message == "bye"
    status = await am.meeting.get_meeting_status(mid)
    assert status.state is MeetingState.ENDED
    assert status.floor_holder is None
    history = await am.meeting.get_meeting_history(mid)
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    kinds = [(e.type.value, e.agent) for e in history]
    assert kinds[0] == ("agent_joined", "host")
    assert ("meeting_started", "host") in kinds
    assert kinds[-1] == ("meeting_ended", "host")
    assert history[-1].message == "bye"
    spoken = [(e.agent, e.message) for e in history if e.type is E.AGENT_SPOKE]
    assert spoken == [
        ("host", "welcome"),
        ("a", "a-0"),
        ("b", "b-0"),
        ("host", "round two"),
        ("a", "a-1"),
        ("b", "b-1"),
    ]
    assert await am.meeting.get_meeting_history(mid, after_seq=history[-2].seq) == [history[-1]]
    with pytest.raises(MeetingEnded):
        await am.meeting.speak("a", mid, "too late")
    listed = await am.meeting.list_meetings(active=False)
    assert [m.meeting_id for m in listed] == [mid]
    assert await am.meeting.list_meetings(active=True) == []


async def test_create_errors_leave_nothing(am: AM) -> None:
    await setup(am, "host", "a", "b")
    await am.register_organization("other", "Other")
    await am.register_agent("x", "other", "X")
    cases: list[tuple[Any, dict[str, Any], type[Exception]]] = [
        ((("host", []),), {}, InvalidArgument),
        ((("host", ["a", "a"]),), {}, InvalidArgument),
        ((("host", ["host", "a"]),), {}, InvalidArgument),
        ((("host", "ab"),), {}, InvalidArgument),
        ((("host", ["a", ""]),), {}, InvalidArgument),
        ((("host", ["a", "nobody"]),), {}, AgentNotFound),
        ((("nobody", ["a"]),), {}, AgentNotFound),
        ((("host", ["a", "x"]),), {}, CrossOrganization),
        ((("host", ["a"]),), {"turn_duration": -1}, InvalidArgument),
        ((("host", ["a"]),), {"turn_duration": "1"}, InvalidArgument),
        ((("host", ["a"]),), {"speaker_selection": "random"}, InvalidArgument),
    ]
    for (args,), kwargs, error in cases:
        with pytest.raises(error):
            await am.meeting.create_meeting(*args, **kwargs)
    assert await am.meeting.list_meetings() == []
    assert await internals(am).database.fetch_val("SELECT count(*) FROM meeting_participants") == 0


async def test_operation_errors(am: AM) -> None:
    await setup(am, "host", "a", "b", "c")
    await am.register_organization("other", "Other")
    await am.register_agent("x", "other", "X")
    mid = await am.meeting.create_meeting("host", ["a", "b"])
    with pytest.raises(MeetingNotFound):
        await am.meeting.attend_meeting("a", uuid.uuid4())
    with pytest.raises(MeetingNotFound):
        await am.meeting.get_meeting_status(uuid.uuid4())
    with pytest.raises(MeetingNotFound):
        await am.meeting.get_meeting_history(uuid.uuid4())
    with pytest.raises(InvalidArgument):
        await am.meeting.get_meeting_status("not-a-uuid")
    with pytest.raises(InvalidArgument):
        await am.meeting.get_meeting_history(mid, limit=0)
    with pytest.raises(InvalidOperation, match="not a participant"):
        await am.meeting.attend_meeting("c", mid)
    with pytest.raises(CrossOrganization):
        await am.meeting.attend_meeting("x", mid)
    with pytest.raises(AgentNotFound):
        await am.meeting.attend_meeting("ghost", mid)
    with pytest.raises(NotHost):
        await am.meeting.start_meeting("a", mid, "hi")
    with pytest.raises(MeetingNotReady) as not_ready:
        await am.meeting.start_meeting("host", mid, "hi")
    assert not_ready.value.absent == ["a", "b"]
    with pytest.raises(NotYourTurn):
        await am.meeting.speak("a", mid, "before start")
    with pytest.raises(InvalidOperation, match="cannot leave"):
        await am.meeting.leave_meeting("host", mid)
    with pytest.raises(NotHost):
        await am.meeting.end_meeting("a", mid)
    events_before = await history_types(am, mid)

    async with anyio.create_task_group() as tg:
        got = attend_all(tg, am, mid, "a", "b")
        await wait_for_history(am, mid, len(events_before) + 2)
        with pytest.raises(InvalidMessage):
            await am.meeting.start_meeting("host", mid, object())
        with pytest.raises(InvalidArgument):
            await am.meeting.start_meeting("host", mid, "hi", next_speaker="c")
        assert (await am.meeting.get_meeting_status(mid)).state is MeetingState.CREATED

        async def host() -> None:
            turn = await am.meeting.start_meeting("host", mid, "hi", next_speaker="b")
            assert turn.ended

        tg.start_soon(host)
        await wait_for_floor(am, mid, "b")
        with pytest.raises(NotYourTurn) as not_yours:
            await am.meeting.speak("a", mid, "not me")
        assert not_yours.value.floor_holder == "b"
        with pytest.raises(InvalidOperation, match="already started"):
            await am.meeting.start_meeting("host", mid, "again")
        with pytest.raises(InvalidArgument):
            await am.meeting.speak("b", mid, "x", next_speaker="c")
        with pytest.raises(InvalidMessage):
            await am.meeting.speak("b", mid, object())
        assert (await am.meeting.get_meeting_status(mid)).floor_holder == "b"
        await am.meeting.end_meeting("host", mid)
    assert got["a"].ended
    assert got["b"].turn_number == 1
    with pytest.raises(MeetingEnded):
        await am.meeting.end_meeting("host", mid)
    with pytest.raises(MeetingEnded):
        await am.meeting.attend_meeting("a", mid)
    with pytest.raises(MeetingEnded):
        await am.meeting.leave_meeting("a", mid)


async def test_timeout_advances_floor_and_late_speak_fails(am: AM) -> None:
    await setup(am, "host", "a", "b")
    mid = await am.meeting.create_meeting("host", ["a", "b"], turn_duration=0.3)
    async with anyio.create_task_group() as tg:
        b_turns: list[Turn[Any]] = []

        async def b() -> None:
            turn = await am.meeting.attend_meeting("b", mid)
            b_turns.append(turn)
            await am.meeting.speak("b", mid, "b speaks")

        a_first: list[Turn[Any]] = []

        async def a() -> None:
            a_first.append(await am.meeting.attend_meeting("a", mid))

        tg.start_soon(a)
        tg.start_soon(b)
        await wait_for_history(am, mid, 3)
        started = anyio.current_time()
        host_turn = await am.meeting.start_meeting("host", mid, "go")  # a times out, b speaks, back to host
        assert anyio.current_time() - started >= 0.25
        assert a_first[0].turn_number == 1
        assert b_turns[0].turn_number == 2
        timed_out = [m for m in b_turns[0].messages if m.type is E.AGENT_TIMED_OUT]
        assert [m.agent for m in timed_out] == ["a"]
        assert "did not speak" in timed_out[0].data["system_message"]
        assert [m.type for m in host_turn.messages].count(E.AGENT_TIMED_OUT) == 1
        # a's late speak: TurnTimedOut, and nothing recorded
        before = await history_types(am, mid)
        with pytest.raises(TurnTimedOut):
            await am.meeting.speak("a", mid, "late")
        assert await history_types(am, mid) == before
        # the host holds the floor now; its own turn also has a timer
        status = await am.meeting.get_meeting_status(mid)
        assert status.floor_holder == "host"
        assert status.turn_deadline is not None
        await am.meeting.end_meeting("host", mid)
    history = await am.meeting.get_meeting_history(mid)
    changes = [(e.agent, e.data["reason"]) for e in history if e.type is E.TURN_CHANGED]
    assert changes == [("a", "start"), ("b", "timeout"), ("host", "spoke")]


async def test_leave_by_floor_holder_and_by_waiting_agent(am: AM) -> None:
    await setup(am, "host", "a", "b", "c")
    mid = await am.meeting.create_meeting("host", ["a", "b", "c"])
    async with anyio.create_task_group() as tg:
        results = attend_all(tg, am, mid, "a", "b", "c")
        await wait_for_history(am, mid, 4)

        async def host() -> None:
            results["host"] = await am.meeting.start_meeting("host", mid, "go")

        tg.start_soon(host)
        await wait_for_floor(am, mid, "a")
        # c is waiting: its leave is applied when a's turn ends
        left = anyio.Event()

        async def leave_c() -> None:
            await am.meeting.leave_meeting("c", mid)
            left.set()

        tg.start_soon(leave_c)
        await anyio.sleep(0.1)
        assert not left.is_set()
        assert (await am.meeting.get_meeting_status(mid)).participants[3].status is ParticipantStatus.PRESENT
        # a holds the floor and leaves: at once, floor goes to b; c's leave applied too
        await am.meeting.leave_meeting("a", mid)
        with anyio.fail_after(5):
            await left.wait()
        assert results["c"].left
        status = await am.meeting.get_meeting_status(mid)
        assert status.floor_holder == "b"
        assert [p.status for p in status.participants] == [
            ParticipantStatus.PRESENT,
            ParticipantStatus.LEFT,
            ParticipantStatus.PRESENT,
            ParticipantStatus.LEFT,
        ]
        with pytest.raises(InvalidOperation, match="already left"):
            await am.meeting.leave_meeting("a", mid)
        with pytest.raises(InvalidArgument):
            await am.meeting.speak("b", mid, "to a", next_speaker="a")
        turn_b = results["b"]
        assert turn_b.turn_number == 2
        # rotation closed up: b -> host
        host_turn_task_done = anyio.Event()

        async def b_speaks() -> None:
            results["b2"] = await am.meeting.speak("b", mid, "only me left")
            host_turn_task_done.set()

        tg.start_soon(b_speaks)
        await wait_for_floor(am, mid, "host")
        await am.meeting.end_meeting("host", mid)
    assert results["b2"].ended
    assert results["host"].turn_number == 3
    kinds = await history_types(am, mid)
    assert kinds.index(("agent_left", "a")) < kinds.index(("agent_left", "c"))
    assert kinds[-2:] == [("turn_changed", "host"), ("meeting_ended", "host")]


async def test_leave_before_start(am: AM) -> None:
    await setup(am, "host", "a", "b")
    mid = await am.meeting.create_meeting("host", ["a", "b"])
    await am.meeting.leave_meeting("b", mid)
    async with anyio.create_task_group() as tg:
        got: list[Turn[Any]] = []

        async def a() -> None:
            got.append(await am.meeting.attend_meeting("a", mid))
            got.append(await am.meeting.speak("a", mid, "hello"))

        tg.start_soon(a)
        await wait_for_history(am, mid, 3)
        with anyio.fail_after(10):
            host = await am.meeting.start_meeting("host", mid, "just us")  # b left: not absent
        await am.meeting.end_meeting("host", mid)
    assert host.turn_number == 2
    assert got[0].turn_number == 1
    assert got[1].ended


async def test_end_wakes_everyone(am: AM) -> None:
    await setup(am, "host", "a", "b", "c")
    mid = await am.meeting.create_meeting("host", ["a", "b", "c"])
    async with anyio.create_task_group() as tg:
        woke = attend_all(tg, am, mid, "a", "b", "c")
        await wait_for_history(am, mid, 4)
        await am.meeting.end_meeting("host", mid, message={"summary": "cancelled"})
    assert all(woke[n].ended and woke[n].ending_message == {"summary": "cancelled"} for n in "abc")
    assert (await am.meeting.get_meeting_status(mid)).state is MeetingState.ENDED


async def test_selection_policies(am: AM) -> None:
    names = ["a", "b", "c", "d"]
    await setup(am, "host", *names)
    spoken: list[str] = []

    @am.register_turn_handler(*names)
    async def on_turn(turn: Turn[Any]) -> str:
        spoken.append(turn.agent)
        return f"from {turn.agent}"

    calls: list[str | None] = []

    def garbage(status: Any, last: MeetingEvent[Any] | None) -> Any:
        calls.append(last.agent if last else None)
        return [42, "nobody", None, "d", ValueError][len(calls) % 5]

    def always_c(status: Any, last: MeetingEvent[Any] | None) -> str:
        return "c"

    def broken(status: Any, last: MeetingEvent[Any] | None) -> str:
        raise RuntimeError("selector bug")

    async def run(policy: Any, count: int) -> Turn[Any]:
        spoken.clear()
        mid = await am.meeting.create_meeting("host", names, speaker_selection=policy)
        result: list[Turn[Any]] = []

        async def host() -> None:
            result.append(await am.meeting.start_meeting("host", mid, "go"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(host)
                await until(_async(lambda: len(spoken) >= count))
                await am.meeting.end_meeting("host", mid)
        return result[0]

    for policy, expected in [
        ("round_robin", ["a", "b", "c", "d"]),
        (always_c, ["c", "d", "c", "d"]),  # never twice in a row: falls back to round robin
        (broken, ["a", "b", "c", "d"]),
    ]:
        await run(policy, 4)
        assert spoken[:4] == expected, policy
    # garbage answers never stall the meeting
    await run(garbage, 3)  # "nobody" -> a, None -> b, "d" -> d, then ValueError -> host
    assert spoken == ["a", "b", "d"]
    # host-chosen next speaker
    spoken.clear()
    mid = await am.meeting.create_meeting("host", names)
    with anyio.fail_after(10):
        turn = await am.meeting.start_meeting("host", mid, "d first", next_speaker="d")
        assert spoken == ["d"]
        turn = await am.meeting.speak("host", mid, "now b", next_speaker="b")
    assert spoken == ["d", "b", "c", "d"]
    assert turn.turn_number == 6
    await am.meeting.end_meeting("host", mid)


async def test_event_handlers_that_sleep_and_raise(am: AM) -> None:
    await setup(am, "host", "a", "b")
    seen: list[tuple[int, str]] = []
    slow_seen: list[int] = []

    @am.on_meeting_event()
    async def record(event: MeetingEvent[Any]) -> None:
        seen.append((event.seq, event.type.value))

    @am.on_meeting_event(E.AGENT_SPOKE, E.MEETING_ENDED)
    async def slow(event: MeetingEvent[Any]) -> None:
        await anyio.sleep(2)
        slow_seen.append(event.seq)

    @am.on_meeting_event(E.AGENT_SPOKE)
    async def failing(event: MeetingEvent[Any]) -> None:
        raise RuntimeError("handler bug")

    @am.register_turn_handler("a", "b")
    async def on_turn(turn: Turn[Any]) -> str:
        return "idea"

    mid = await am.meeting.create_meeting("host", ["a", "b"])
    with anyio.fail_after(1.5):  # the slow handler (2 s per event) does not delay the turns
        turn = await am.meeting.start_meeting("host", mid, "go")
        turn = await am.meeting.speak("host", mid, "more")
        await am.meeting.end_meeting("host", mid)
    assert turn.turn_number == 6
    history = await am.meeting.get_meeting_history(mid)
    await until(_async(lambda: len(seen) >= len(history)), 5)
    assert seen == [(e.seq, e.type.value) for e in history]
    assert internals(am).events.statistics().failed == sum(e.type is E.AGENT_SPOKE for e in history) == 6
    assert slow_seen == []


async def test_hosted_agent_classes_and_handler_errors(am: AM) -> None:
    from agent_messaging.actors.agent import Agent

    await setup(am, "host", "bob", "eve", "zed")

    class Bob(Agent[Any]):
        async def on_turn(self, turn: Turn[Any]) -> Any:
            return {"said": "bob", "turn": turn.turn_number}

    class Eve(Agent[Any]):
        async def on_turn(self, turn: Turn[Any]) -> Any:
            raise RuntimeError("eve crashed")

    class Zed(Agent[Any]):
        async def on_turn(self, turn: Turn[Any]) -> Any:
            return None  # passes

    am.host("bob", Bob)
    am.host("eve", Eve)
    am.host("zed", Zed)
    mid = await am.meeting.create_meeting("host", ["bob", "eve", "zed"])
    turn = await am.meeting.start_meeting("host", mid, "go")
    assert [(m.agent, m.message) for m in turn.messages if m.type is E.AGENT_SPOKE] == [
        ("bob", {"said": "bob", "turn": 1})
    ]
    await am.meeting.end_meeting("host", mid)
    reasons = [e.data["reason"] for e in await am.meeting.get_meeting_history(mid) if e.type is E.TURN_CHANGED]
    assert reasons == ["start", "spoke", "passed", "passed"]


async def test_hosted_slow_agent_times_out_and_recovers(am: AM) -> None:
    await setup(am, "host", "fast", "slow")
    slow_calls = 0

    @am.register_turn_handler("fast", "slow")
    async def on_turn(turn: Turn[Any]) -> str:
        nonlocal slow_calls
        if turn.agent == "slow":
            slow_calls += 1
            if slow_calls == 1:
                await anyio.sleep(5)
        return f"{turn.agent} idea"

    mid = await am.meeting.create_meeting("host", ["fast", "slow"], turn_duration=0.3)
    with anyio.fail_after(10):
        await am.meeting.start_meeting("host", mid, "go")
        await am.meeting.speak("host", mid, "again")
    await am.meeting.end_meeting("host", mid)
    spoken = [(e.agent, e.type.value) for e in await am.meeting.get_meeting_history(mid) if e.agent != "host"]
    assert ("slow", "agent_timed_out") in spoken
    assert spoken.count(("slow", "agent_spoke")) == 1
    assert spoken.count(("fast", "agent_spoke")) == 2


async def test_history_gap_free_under_concurrency(am: AM) -> None:
    names = [f"p{i}" for i in range(12)]
    await setup(am, "host", *names)

    @am.register_turn_handler(*names)
    async def on_turn(turn: Turn[Any]) -> str:
        return "x"

    groups = [names[i : i + 3] for i in range(0, 12, 3)]
    mids: list[uuid.UUID] = []

    async def run_meeting(group: list[str]) -> None:
        mid = await am.meeting.create_meeting("host", group)
        mids.append(mid)
        await am.meeting.start_meeting("host", mid, "go")
        for _ in range(5):
            await am.meeting.speak("host", mid, "more")
        await am.meeting.end_meeting("host", mid)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            for group in groups:
                tg.start_soon(run_meeting, group)
    assert len(mids) == 12
    for mid in mids:
        history = await am.meeting.get_meeting_history(mid)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert [e.type for e in history].count(E.AGENT_SPOKE) == 6 * 4
        assert history[-1].type is E.MEETING_ENDED
    rows = await internals(am).database.fetch(
        "SELECT meeting_id, count(*) AS n, max(seq) AS m FROM meeting_events GROUP BY meeting_id"
    )
    assert all(r["n"] == r["m"] for r in rows)
