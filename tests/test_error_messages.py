"""Errors name the problem and the fix: raised for real by the runtime, each message says what to do."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from agent_messaging import (
    AgentMessaging,
    AgentNotFound,
    CrossOrganization,
    DeadLetterNotFound,
    InvalidOperation,
    MeetingEnded,
    MeetingNotFound,
    MeetingNotReady,
    NotHost,
    NotYourTurn,
    OrganizationNotFound,
)
from tests._helpers import attend_all, eventually

pytestmark = pytest.mark.anyio

AM = AgentMessaging[Any]


async def cast(am: AM) -> uuid.UUID:
    await am.register_organization("acme", "Acme")
    await am.register_organization("other", "Other")
    for name in ("host", "a", "b", "outsider"):
        await am.register_agent(name, "acme", name)
    await am.register_agent("stranger", "other", "Stranger")
    return await am.meeting.create_meeting("host", ["a", "b"])


async def test_speaking_before_the_meeting_started_says_how_it_starts(am: AM) -> None:
    meeting = await cast(am)
    for attempt in (am.meeting.speak("a", meeting, "too early"), am.meeting.pass_turn("host", meeting)):
        with pytest.raises(NotYourTurn) as caught:
            await attempt
        text = str(caught.value)
        assert "has not started" in text
        assert "start_meeting" in text
        assert "attend_meeting and wait for their turn" in text
        assert caught.value.started is False
        assert caught.value.floor_holder is None


async def test_speaking_out_of_turn_names_the_floor_holder_and_says_to_wait(am: AM) -> None:
    meeting = await cast(am)
    async with anyio.create_task_group() as tg:
        attend_all(tg, am, meeting, "a", "b")

        async def present() -> bool:
            status = await am.meeting.get_meeting_status(meeting)
            return all(p.status.value == "present" for p in status.participants if not p.is_host)

        await eventually(present)
        tg.start_soon(am.meeting.start_meeting, "host", meeting, "opening")

        async def a_has_the_floor() -> bool:
            return (await am.meeting.get_meeting_status(meeting)).floor_holder == "a"

        await eventually(a_has_the_floor)
        with pytest.raises(NotYourTurn) as caught:
            await am.meeting.speak("b", meeting, "me first")
        assert caught.value.started is True
        assert "('a' holds it): wait for your turn" in str(caught.value)
        await am.meeting.end_meeting("host", meeting)
    with pytest.raises(MeetingEnded, match="no more turns; get_meeting_history still reads it"):
        await am.meeting.speak("a", meeting, "after the end")


async def test_meeting_errors_say_what_to_do(am: AM) -> None:
    meeting = await cast(am)
    with pytest.raises(MeetingNotReady, match="each must join first \\(attend_meeting"):
        await am.meeting.start_meeting("host", meeting, "hi")
    with pytest.raises(NotHost, match="only its host \\(the agent that created it\\) can"):
        await am.meeting.end_meeting("a", meeting)
    with pytest.raises(InvalidOperation, match="only its host and the agents create_meeting invited take part"):
        await am.meeting.attend_meeting("outsider", meeting)
    with pytest.raises(CrossOrganization, match="only within their own organization"):
        await am.meeting.attend_meeting("stranger", meeting)
    with pytest.raises(MeetingNotFound, match="use the id create_meeting returned"):
        await am.meeting.get_meeting_status(uuid.uuid4())


async def test_lookups_say_how_to_fix_them(am: AM) -> None:
    with pytest.raises(OrganizationNotFound, match="register it first \\(register_organization"):
        await am.get_organization("nowhere")
    with pytest.raises(AgentNotFound, match="register it first \\(register_agent"):
        await am.get_agent("nobody")
    with pytest.raises(DeadLetterNotFound, match="get_dead_letters"):
        await am.retry_dead_letter(424242)
