"""Customers write to a support agent with ``send``; the agent works its unread queue with ``wait_for_message``.

Run it with ``python examples/03_support_chat.py``: with no AGENT_MESSAGING_DSN set it starts the
embedded PostgreSQL in ``.agent-messaging/pgdata``.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from agent_messaging import AgentMessaging, Config


class Chat(BaseModel):
    """A chat line."""

    text: str


am = AgentMessaging[Chat](Config())
CUSTOMERS = {
    "carla": "My invoice shows the wrong address.",
    "dmitri": "How do I reset my password?",
    "erin": "Can I upgrade my plan mid-month?",
}


async def support_desk(expected: int) -> None:
    """The support agent takes its messages one by one, oldest first, and answers each customer."""
    for _ in range(expected):
        message = await am.conversation.wait_for_message("support", timeout=30)
        print(f"support reads  {message.sender}: {message.payload.text}")
        answer = Chat(text=f"Thanks {message.sender.title()}, a ticket is open for: {message.payload.text!r}")
        await am.conversation.send("support", message.sender, answer)


async def main() -> None:
    async with am:
        # exist_ok: an earlier run registered them already, and that is fine
        await am.register_organization("example-shop", "Example Shop", exist_ok=True)
        for name in ("support", *CUSTOMERS):
            await am.register_agent(name, "example-shop", name.title(), exist_ok=True)
        for name in ("support", *CUSTOMERS):  # clear what an earlier run may have left unread
            while await am.conversation.get_unread_messages(name):
                pass
        async with anyio.create_task_group() as tg:
            tg.start_soon(support_desk, len(CUSTOMERS))
            for name, text in CUSTOMERS.items():
                await am.conversation.send(name, "support", Chat(text=text))
                print(f"{name} writes: {text}")
        for name in CUSTOMERS:
            replies = await am.conversation.get_unread_messages(name, from_agent="support")
            for reply in replies:
                print(f"{name} reads support: {reply.payload.text}")
        print(f"support answered {len(CUSTOMERS)} customers")


if __name__ == "__main__":
    anyio.run(main)
