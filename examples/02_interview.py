"""An interviewer agent questions a candidate agent with ``send_and_wait`` (talk and wait).

Run it with ``python examples/02_interview.py``: with no AGENT_MESSAGING_DSN set it starts the
embedded PostgreSQL in ``.agent-messaging/pgdata``.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from agent_messaging import AgentMessaging, Config, MessageContext


class Line(BaseModel):
    """One line of the interview."""

    text: str


am = AgentMessaging[Line](Config())
ANSWERS = {
    "What is your name?": "Ada, a candidate agent.",
    "Why do you want this job?": "I like turning vague plans into working programs.",
    "Any questions for us?": "How do your agents talk to each other?",
}


@am.register_handler("candidate")
async def candidate(question: Line, ctx: MessageContext[Line]) -> Line:
    """The candidate answers each question; the returned value is the reply the interviewer waits for."""
    return Line(text=ANSWERS.get(question.text, "Could you rephrase that?"))


async def main() -> None:
    async with am:
        # exist_ok: an earlier run registered them already, and that is fine
        await am.register_organization("example-hr", "Example HR", exist_ok=True)
        for name in ("interviewer", "candidate"):
            await am.register_agent(name, "example-hr", name.title(), exist_ok=True)
        for question in ANSWERS:
            print(f"interviewer: {question}")
            answer = await am.conversation.send_and_wait("interviewer", "candidate", Line(text=question), timeout=30)
            print(f"candidate:   {answer.text}")
        goodbye = Line(text="Thank you, we'll call you.")
        await am.conversation.end_conversation("interviewer", "candidate", message=goodbye)
        history = await am.conversation.get_conversation_history("interviewer", "candidate", limit=1000)
        session = [m for m in history if m.conversation_id == history[-1].conversation_id]
        print(f"interview over; {len(session)} messages are in this session's history")


if __name__ == "__main__":
    anyio.run(main)
