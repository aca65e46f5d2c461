"""Calls answered in the database: one reply per request, closed requests, errors back to the caller, restarts."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import (
    AgentMessaging,
    AgentStatus,
    Config,
    ConversationEnded,
    DeadlockDetected,
    HandlerError,
    InvalidOperation,
    MessageContext,
    MessageKind,
)
from agent_messaging._app import internals
from tests._helpers import eventually

AM = AgentMessaging[Any]


async def setup(am: AM, *names: str) -> None:
    await am.register_organization("acme", "Acme")
    for name in names:
        await am.register_agent(name, "acme", name.title())


async def test_two_replies_at_once_one_wins(am: AM) -> None:
    await setup(am, "alice", "bob")
    for round_ in range(20):
        outcome: dict[str, Any] = {}

        async def call(round_: int = round_, outcome: dict[str, Any] = outcome) -> None:
            outcome["answer"] = await am.conversation.send_and_wait("alice", "bob", f"q{round_}", timeout=10)

        async def answer(who: str, round_: int = round_, outcome: dict[str, Any] = outcome) -> None:
            try:
                outcome[who] = await am.conversation.reply("bob", "alice", f"{who}-{round_}")
            except InvalidOperation as exc:
                outcome[who] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await eventually(lambda: len(internals(am).calls.by_id) == 1)
            await eventually(_unread_request(am, f"q{round_}"))  # this round's request is committed
            tg.start_soon(answer, "one")
            tg.start_soon(answer, "two")
        errors = [v for k, v in outcome.items() if k in ("one", "two") and isinstance(v, InvalidOperation)]
        assert len(errors) == 1, outcome
        # it lost the claim ("already answered"), or looked after the winner committed (nothing open left)
        assert "already answered" in str(errors[0]) or "no unanswered request" in str(errors[0])
        winner = next(k for k in ("one", "two") if not isinstance(outcome[k], InvalidOperation))
        assert outcome["answer"] == f"{winner}-{round_}"
    replies = await internals(am).database.fetch_val("SELECT count(*) FROM messages WHERE kind = 'reply'")
    assert replies == 20


def _unread_request(am: AM, payload: str | None = None) -> Any:
    """A check that alice's request to bob (the one with ``payload``, else any) is in the database. Requests
    stay unread (a call consumes its reply, not its request), so earlier rounds' requests count as well."""

    async def check() -> bool:
        unread = await am.conversation.get_messages_from_agent("bob", "alice", include_read=False, limit=1000)
        return any(payload is None or m.payload == payload for m in unread)

    return check


async def test_reply_after_end_answers_the_new_conversation(am: AM) -> None:
    await setup(am, "alice", "bob")
    old: list[Any] = []

    async def first_call() -> None:
        with pytest.raises(ConversationEnded):
            await am.conversation.send_and_wait("alice", "bob", "old question", timeout=10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_call)
        await eventually(_unread_request(am))
        old = await am.conversation.get_messages_from_agent("bob", "alice")
        await am.conversation.end_conversation("bob", "alice")
    answer: list[Any] = []

    async def second_call() -> None:
        answer.append(await am.conversation.send_and_wait("alice", "bob", "new question", timeout=10))

    async with anyio.create_task_group() as tg:
        tg.start_soon(second_call)
        await eventually(lambda: len(internals(am).calls.by_id) == 1)

        async def both_requests() -> bool:
            return len(await am.conversation.get_messages_from_agent("bob", "alice")) == 2

        await eventually(both_requests)
        await am.conversation.reply("bob", "alice", "the new answer")  # not the old, closed request
    assert answer == ["the new answer"]
    with pytest.raises(InvalidOperation, match="conversation ended"):
        await am.conversation.reply("bob", "alice", "too late", request_id=str(old[0].id))


async def test_a_failing_call_handler_answers_the_caller_and_keeps_running(config: Config) -> None:
    am = AgentMessaging[Any](config.model_copy(update={"max_attempts": 3, "restart_backoff_initial": 0}))
    attempts: list[int] = []

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> Any:
        if message == "fail":
            attempts.append(ctx.attempt)
            raise ValueError("bad input from alice")
        return f"ok: {message}"

    async with am:
        await setup(am, "alice", "bob")
        with anyio.fail_after(10):
            with pytest.raises(HandlerError) as caught:
                await am.conversation.send_and_wait("alice", "bob", "fail", timeout=30)
        error = caught.value
        assert (error.agent, error.error_type, error.error_message) == ("bob", "ValueError", "bad input from alice")
        assert "Traceback" in error.remote_traceback
        assert "bad input from alice" in error.remote_traceback
        assert attempts == [1, 2, 3]  # retried as the policy says, then answered with the error
        assert await am.conversation.send_and_wait("alice", "bob", "again", timeout=10) == "ok: again"
        assert (await am.get_agent("bob")).status is AgentStatus.ACTIVE
        assert await am.get_dead_letters("bob") == []
        # the error reply is durable: the request is answered
        row = await internals(am).database.fetch_row(
            "SELECT replied_at FROM messages WHERE id = $1", [error.request_id]
        )
        assert row is not None
        assert row["replied_at"] is not None


async def test_errors_retrying_cannot_fix_are_answered_at_once(config: Config) -> None:
    am = AgentMessaging[Any](config.model_copy(update={"max_attempts": 5}))
    attempts = 0

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> Any:
        nonlocal attempts
        attempts += 1
        raise DeadlockDetected(["bob", "carol", "bob"])

    async with am:
        await setup(am, "alice", "bob")
        with anyio.fail_after(5), pytest.raises(HandlerError, match="DeadlockDetected"):
            await am.conversation.send_and_wait("alice", "bob", "x", timeout=30)
        assert attempts == 1


async def test_a_detected_deadlock_goes_back_to_the_caller_and_kills_nobody(am: AM) -> None:
    await setup(am, "alice", "bob", "user")

    @am.register_handler("alice", "bob")
    async def handler(message: Any, ctx: MessageContext[Any]) -> Any:
        if ctx.kind is not MessageKind.REQUEST:
            return None
        other = "bob" if ctx.agent == "alice" else "alice"
        return await am.conversation.send_and_wait(ctx.agent, other, "and you?", timeout=30)

    with anyio.fail_after(5), pytest.raises(HandlerError) as caught:
        await am.conversation.send_and_wait("user", "alice", "start", timeout=30)
    # bob's call back to alice closed the cycle: bob's handler failed with it, so alice's call to bob
    # failed with bob's HandlerError, and alice's handler failed in turn: user gets alice's error
    assert caught.value.agent == "alice"
    assert "DeadlockDetected" in caught.value.error_message
    for name in ("alice", "bob"):
        assert (await am.get_agent(name)).status is AgentStatus.ACTIVE
    assert await internals(am).database.fetch_val("SELECT count(*) FROM call_waits") == 0


async def test_a_failed_agent_is_restarted_by_request(config: Config) -> None:
    am = AgentMessaging[Any](
        config.model_copy(update={"agent_max_restarts": 1, "restart_backoff_initial": 0, "max_attempts": 10})
    )
    broken = True
    handled: list[Any] = []

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> None:
        if broken:
            raise RuntimeError("still broken")
        handled.append(message)

    async with am:
        await setup(am, "alice", "bob")
        with pytest.raises(InvalidOperation, match="not failed"):
            await am.restart_agent("bob")
        await am.one_way.send("alice", "bob", "work")

        async def failed() -> bool:
            return (await am.get_agent("bob")).status is AgentStatus.FAILED

        await eventually(failed)
        broken = False
        agent = await am.restart_agent("bob")
        assert agent.external_id == "bob"
        assert (await am.get_agent("bob")).status is AgentStatus.ACTIVE
        await eventually(lambda: handled == ["work"])
