"""A brainstorming meeting: a host and four hosted agents take turns; one of them is too slow once.

The four participants are ``Agent`` classes with ``on_turn``: they attend the
meeting by themselves and speak what ``on_turn`` returns. The host opens the
meeting, takes its turn after each round, and ends it. Each turn lasts at most
half a second: the ``pessimist`` thinks too long in the first round, its turn
times out (recorded in the history) and the floor moves on. At the end the
transcript is printed from ``get_meeting_history``.

Run it with ``python examples/04_brainstorming_meeting.py``: with no
AGENT_MESSAGING_DSN set it starts the embedded PostgreSQL in ``.agent-messaging/pgdata``.
"""

from __future__ import annotations

import uuid

import anyio

from agent_messaging import Agent, AgentMessaging, Config, MeetingEventType, Turn

ORG = "example-brainstorm"
run = uuid.uuid4().hex[:6]  # fresh agent ids on every run, so the example can run again on the same database
HOST = f"facilitator-{run}"
IDEAS = {
    "optimist": ["a rooftop garden", "solar awnings", "a repair café"],
    "engineer": ["rainwater tanks", "heat pumps", "a shared tool library"],
    "pessimist": ["(thinking...)", "check the budget first", "ask the neighbours"],
    "artist": ["a mural on the east wall", "lantern festival", "a poetry bench"],
}
ROUNDS = 3
am = AgentMessaging[str](Config())


def make(role: str) -> type[Agent[str]]:
    """An agent class that offers its next idea on each turn."""

    class Brainstormer(Agent[str]):
        spoken = 0

        async def on_turn(self, turn: Turn[str]) -> str | None:
            idea = IDEAS[role][type(self).spoken % len(IDEAS[role])]
            type(self).spoken += 1
            if role == "pessimist" and type(self).spoken == 1:
                await anyio.sleep(2)  # too slow: the turn (0.5 s) times out
            heard = sum(m.type is MeetingEventType.AGENT_SPOKE for m in turn.messages)
            return f"{idea} (after hearing {heard} ideas)"

    Brainstormer.__name__ = role.title()
    return Brainstormer


participants = [f"{role}-{run}" for role in IDEAS]
for role, agent_id in zip(IDEAS, participants, strict=True):
    am.host(agent_id, make(role))


async def main() -> None:
    async with am:
        await am.register_organization(ORG, "Example Brainstorm", exist_ok=True)  # an earlier run may have made it
        for name in (HOST, *participants):
            await am.register_agent(name, ORG, name.split("-")[0].title())
        meeting = await am.meeting.create_meeting(HOST, participants, turn_duration=0.5)
        with anyio.fail_after(60):
            turn = await am.meeting.start_meeting(HOST, meeting, "How do we make our street greener?")
            for number in range(2, ROUNDS + 1):
                turn = await am.meeting.speak(HOST, meeting, f"Round {number}: build on what you heard.")
            await am.meeting.end_meeting(HOST, meeting, message="Thanks all: I'll write it up.")
        print(f"Transcript of meeting {meeting} ({turn.turn_number} turns):")
        for event in await am.meeting.get_meeting_history(meeting):
            who = (event.agent or "").removesuffix(f"-{run}")
            if event.type is MeetingEventType.AGENT_SPOKE:
                print(f"  {event.seq:3} {who}: {event.message}")
            elif event.type is MeetingEventType.AGENT_TIMED_OUT:
                print(f"  {event.seq:3} [timeout] {event.data['system_message'].replace(f'-{run}', '')}")
            elif event.type is MeetingEventType.MEETING_ENDED:
                print(f"  {event.seq:3} [end] {who} ended the meeting: {event.message}")
            elif event.type is MeetingEventType.MEETING_STARTED:
                print(f"  {event.seq:3} [start] {who} opened the meeting")


if __name__ == "__main__":
    anyio.run(main)
