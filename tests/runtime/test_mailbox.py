"""Mailbox: bounded FIFO with backpressure, a nowait variant and actor-level errors."""

from __future__ import annotations

import anyio
import pytest

from agent_messaging.errors import ActorStopped, InvalidArgument, MailboxFull
from agent_messaging.runtime.mailbox import Mailbox, MailboxStatistics

pytestmark = pytest.mark.anyio


async def test_messages_come_out_in_order() -> None:
    mailbox: Mailbox[int] = Mailbox("a", 3)
    for i in range(3):
        await mailbox.send(i)
    assert [await mailbox.receive() for _ in range(3)] == [0, 1, 2]
    mailbox.close()


async def test_send_waits_while_full_until_a_message_is_taken() -> None:
    mailbox: Mailbox[str] = Mailbox("a", 1)
    mailbox.send_nowait("first")
    delivered = anyio.Event()

    async def sender() -> None:
        await mailbox.send("second")
        delivered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        assert not delivered.is_set()
        assert mailbox.statistics().waiting_senders == 1
        assert mailbox.receive_nowait() == "first"
        await delivered.wait()
    assert mailbox.receive_nowait() == "second"
    mailbox.close()


async def test_send_nowait_on_a_full_mailbox_raises_mailbox_full() -> None:
    mailbox: Mailbox[int] = Mailbox("bob", 2)
    mailbox.send_nowait(1)
    mailbox.send_nowait(2)
    with pytest.raises(MailboxFull) as info:
        mailbox.send_nowait(3)
    assert info.value.actor == "bob"
    assert info.value.capacity == 2
    mailbox.close()


async def test_closed_intake_refuses_new_messages_but_drains_queued_ones() -> None:
    mailbox: Mailbox[int] = Mailbox("bob", 5)
    await mailbox.send(1)
    mailbox.close_intake()
    with pytest.raises(ActorStopped):
        await mailbox.send(2)
    with pytest.raises(ActorStopped):
        mailbox.send_nowait(2)
    assert await mailbox.receive() == 1
    with pytest.raises(anyio.EndOfStream):
        await mailbox.receive()
    mailbox.close()


async def test_closing_wakes_a_blocked_sender_with_actor_stopped() -> None:
    mailbox: Mailbox[int] = Mailbox("bob", 1)
    mailbox.send_nowait(1)
    errors: list[BaseException] = []

    async def sender() -> None:
        try:
            await mailbox.send(2)
        except ActorStopped as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        await anyio.wait_all_tasks_blocked()
        mailbox.close()
    assert len(errors) == 1
    assert isinstance(errors[0], ActorStopped)


async def test_statistics_reflect_the_queue() -> None:
    mailbox: Mailbox[int] = Mailbox("bob", 4)
    mailbox.send_nowait(1)
    mailbox.send_nowait(2)
    assert mailbox.statistics() == MailboxStatistics(
        capacity=4, queued=2, waiting_senders=0, waiting_receivers=0, accepting=True
    )
    mailbox.close_intake()
    assert mailbox.statistics().accepting is False
    mailbox.close()


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(InvalidArgument):
        Mailbox("bob", capacity)
