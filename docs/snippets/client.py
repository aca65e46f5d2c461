"""Talk to the agents of ``examples/app.py`` while ``agent-messaging run examples.app:am`` serves them."""

import anyio

from agent_messaging import AgentMessaging, Config


async def main() -> None:
    async with AgentMessaging[str](Config()) as client:  # the same database: same directory, or the same DSN
        print(await client.conversation.send_and_wait("visitor", "greeter", "Ada", timeout=10))
        await client.one_way.send("visitor", "auditor", "checked in")


anyio.run(main)
