"""The Quick start's first meeting: mia chairs, ivy and rowan take their turns from a turn handler."""

import anyio

from agent_messaging import AgentMessaging, Config, MeetingEventType, Turn

am = AgentMessaging[str](Config())
IDEAS = {"ivy": ["tomatoes", "a bee hotel"], "rowan": ["runner beans", "a compost corner"]}
spoken = {"ivy": 0, "rowan": 0}


@am.register_turn_handler("ivy", "rowan")  # ivy's and rowan's meeting turns are taken here
async def suggest(turn: Turn[str]) -> str | None:
    idea = IDEAS[turn.agent][spoken[turn.agent] % 2]
    spoken[turn.agent] += 1
    return f"let's grow {idea}"  # spoken for the agent (None would pass the floor)


async def main() -> None:
    async with am:
        await am.register_organization("acme", "Acme", exist_ok=True)
        for agent_id, name in [("mia", "Mia"), ("ivy", "Ivy"), ("rowan", "Rowan")]:
            await am.register_agent(agent_id, "acme", name, exist_ok=True)
        meeting = await am.meeting.create_meeting("mia", ["ivy", "rowan"], turn_duration=10)
        await am.meeting.start_meeting("mia", meeting, "What shall we plant?")  # returns on mia's next turn
        await am.meeting.speak("mia", meeting, "One more idea each?")
        await am.meeting.end_meeting("mia", meeting, message="Thanks, both.")
        for event in await am.meeting.get_meeting_history(meeting):
            if event.type in (MeetingEventType.AGENT_SPOKE, MeetingEventType.MEETING_ENDED):
                print(f"{event.seq:2} {event.agent}: {event.message}")


anyio.run(main)
