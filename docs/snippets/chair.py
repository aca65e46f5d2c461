"""mia chairs a meeting of ivy and rowan, whose turns are taken by another process (``team.py``)."""

import os

import anyio

from agent_messaging import AgentMessaging, Config, MeetingEventType, MeetingNotReady

am = AgentMessaging[str](Config())


async def main() -> None:
    async with am:
        await am.register_organization("acme", "Acme", exist_ok=True)
        await am.register_agent("mia", "acme", "Mia", exist_ok=True)
        meeting = await am.meeting.create_meeting("mia", ["ivy", "rowan"], turn_duration=10)
        print(f"meeting {meeting}, chaired from pid {os.getpid()}")
        with anyio.fail_after(30):
            while True:  # ivy and rowan join from the other process within moments
                try:
                    await am.meeting.start_meeting("mia", meeting, "What shall we plant?")
                    break
                except MeetingNotReady:
                    await anyio.sleep(0.1)
            await am.meeting.speak("mia", meeting, "One more idea each?")
            await am.meeting.end_meeting("mia", meeting, message="Thanks, both.")
        for event in await am.meeting.get_meeting_history(meeting):
            if event.type in (MeetingEventType.AGENT_SPOKE, MeetingEventType.MEETING_ENDED):
                print(f"{event.seq:2} {event.agent}: {event.message}")


anyio.run(main)
