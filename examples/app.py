"""A small app to run as a process: ``agent-messaging run examples.app:am``.

Two hosted agents of the organization ``example-app``:

- ``greeter`` answers calls: ``send_and_wait("visitor", "greeter", "Ada")`` gets ``"Hello, Ada!"``;
- ``auditor`` records every one-way note it gets (it prints one line per note).

``setup(am)`` is the hook ``agent-messaging run`` awaits once the runtime is open: it
registers the organization and the agents (idempotent, so every start may run it).
Stop the process with Ctrl-C or SIGTERM: running handlers finish, then it exits 0.

Talk to it from another terminal (or a script) with an ``AgentMessaging`` of your own
on the same database (``AGENT_MESSAGING_DSN``, or the same working directory for
the embedded server)::

    async with AgentMessaging[str](Config()) as client:
        print(await client.conversation.send_and_wait("visitor", "greeter", "Ada"))
"""

from __future__ import annotations

from agent_messaging import AgentMessaging, Config, MessageContext

ORG = "example-app"
AGENTS = {"greeter": "Greeter", "auditor": "Auditor", "visitor": "Visitor"}

am = AgentMessaging[str](Config())


@am.register_handler("greeter")
async def greet(name: str, ctx: MessageContext[str]) -> str:
    """A call's reply is the handler's return value."""
    return f"Hello, {name}!"


@am.register_handler("auditor")
async def audit(note: str, ctx: MessageContext[str]) -> None:
    """One-way notes: nothing to return; the message id de-duplicates redeliveries."""
    print(f"auditor: {ctx.sender} says {note!r} (message {ctx.message_id})", flush=True)


async def setup(am: AgentMessaging[str]) -> None:
    """Register the organization and the agents (safe to run on every start)."""
    await am.register_organization(ORG, "Example App", exist_ok=True)
    for external_id, name in AGENTS.items():
        await am.register_agent(external_id, ORG, name, exist_ok=True)
