"""ivy and rowan, hosted by another process: ``agent-messaging run team:am`` (Ctrl-C stops it)."""

import os

from agent_messaging import AgentMessaging, Config, Turn

am = AgentMessaging[str](Config())
IDEAS = {"ivy": ["tomatoes", "a bee hotel"], "rowan": ["runner beans", "a compost corner"]}
spoken = {"ivy": 0, "rowan": 0}


@am.register_turn_handler("ivy", "rowan")
async def suggest(turn: Turn[str]) -> str | None:
    idea = IDEAS[turn.agent][spoken[turn.agent] % 2]
    spoken[turn.agent] += 1
    return f"let's grow {idea} (pid {os.getpid()})"


async def setup(am: AgentMessaging[str]) -> None:
    """Awaited by ``agent-messaging run`` once the runtime is open, on every start."""
    await am.register_organization("acme", "Acme", exist_ok=True)
    for agent_id, name in [("ivy", "Ivy"), ("rowan", "Rowan")]:
        await am.register_agent(agent_id, "acme", name, exist_ok=True)
