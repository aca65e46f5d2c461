"""A dispatcher notifies several hosted agents with one-way messages.

Run it with ``python examples/01_notifications.py``: with no AGENT_MESSAGING_DSN
set it starts the embedded PostgreSQL in ``.agent-messaging/pgdata``.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from agent_messaging import AgentMessaging, Config, MessageContext


class Notice(BaseModel):
    """What the dispatcher sends."""

    title: str
    severity: str = "info"


am = AgentMessaging[Notice](Config())
WORKERS = ["storage", "billing", "search"]
seen: dict[str, list[str]] = {name: [] for name in WORKERS}
all_seen = anyio.Event()


@am.register_handler(*WORKERS)
async def on_notice(notice: Notice, ctx: MessageContext[Notice]) -> None:
    """Each worker records what it was told."""
    seen[ctx.agent].append(notice.title)
    print(f"  {ctx.agent:<8} got [{notice.severity}] {notice.title!r} from {ctx.sender} (attempt {ctx.attempt})")
    if all(len(titles) == 2 for titles in seen.values()):
        all_seen.set()


async def main() -> None:
    async with am:
        org = "example-ops"
        # exist_ok: an earlier run registered them already, and that is fine
        await am.register_organization(org, "Example Ops", exist_ok=True)
        for name in ["dispatcher", *WORKERS]:
            await am.register_agent(name, org, name.title(), exist_ok=True)
        print("dispatcher broadcasts two notices to", ", ".join(WORKERS))
        await am.one_way.send("dispatcher", WORKERS, Notice(title="maintenance at 02:00", severity="warning"))
        await am.one_way.send("dispatcher", WORKERS, Notice(title="maintenance done"))
        with anyio.fail_after(30):
            await all_seen.wait()
        sent = await am.one_way.get_sent_messages("dispatcher", limit=6)
        print(f"dispatcher's last {len(sent)} sent messages are all stored; every worker handled both notices")


if __name__ == "__main__":
    anyio.run(main)
