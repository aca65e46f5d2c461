"""Hosting an ``Agent`` instance: reused across restarts, and told its runtime and id before ``on_start``."""

from __future__ import annotations

from typing import Any

import pytest

from agent_messaging import Agent, AgentMessaging, Config, InvalidArgument, MessageContext, Turn
from agent_messaging.models import MeetingEventType
from tests._helpers import eventually


class Counter(Agent[Any]):
    """Fails on its first message, then answers calls; remembers what the runtime told it."""

    def __init__(self) -> None:
        self.starts = 0
        self.seen: list[tuple[Any, str]] = []
        self.failed_once = False

    async def on_start(self) -> None:
        self.starts += 1
        self.seen.append((self.messaging, self.agent_id))

    async def on_message(self, message: Any, ctx: MessageContext[Any]) -> Any:
        if not self.failed_once:
            self.failed_once = True
            raise RuntimeError("first attempt fails")
        return {"starts": self.starts, "agent": self.agent_id}

    async def on_turn(self, turn: Turn[Any]) -> Any:
        return {"turn_by": self.agent_id, "same_instance_starts": self.starts}


async def test_an_instance_is_reused_across_restarts_and_knows_its_runtime(config: Config) -> None:
    config = config.model_copy(update={"restart_backoff_initial": 0.01, "restart_backoff_max": 0.05})
    am = AgentMessaging[Any](config)
    counter = Counter()
    am.host("bob", counter)
    assert (counter.messaging, counter.agent_id) == (am, "bob")  # set at once: on_turn may run before on_start
    async with am:
        await am.register_organization("acme", "Acme")
        await am.register_agent("alice", "acme", "Alice")
        await am.register_agent("bob", "acme", "Bob")
        await eventually(lambda: counter.starts >= 1)
        answer = await am.conversation.send_and_wait("alice", "bob", {"q": 1}, timeout=10)
        # the first attempt crashed the actor; the supervisor restarted it with the same instance
        assert answer == {"starts": 2, "agent": "bob"}
        assert counter.seen == [(am, "bob"), (am, "bob")]

        # the instance's on_turn takes its meeting turns (the same instance, not a fresh one)
        mid = await am.meeting.create_meeting("alice", ["bob"])
        turn = await am.meeting.start_meeting("alice", mid, "go")
        spoken = [m.message for m in turn.messages if m.type is MeetingEventType.AGENT_SPOKE]
        assert spoken == [{"turn_by": "bob", "same_instance_starts": 2}]
        await am.meeting.end_meeting("alice", mid)


def test_host_refuses_what_is_not_an_agent(config: Config) -> None:
    am = AgentMessaging[Any](config)
    with pytest.raises(InvalidArgument, match="Agent subclass or instance"):
        am.host("bob", object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="Agent subclass or instance"):
        am.host("bob", int)  # type: ignore[arg-type]
