"""Actors and refs: tell/ask semantics, backpressure, failures, graceful and forced stops."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging.errors import ActorStopped, MailboxFull
from agent_messaging.runtime._slot import Slot
from agent_messaging.runtime.actor import Actor, ActorRef, spawn

pytestmark = pytest.mark.anyio


class Recorder(Actor[Any]):
    """Records what happens to it; a few messages have special meanings.

    ``("block", event)`` waits for the event; ``"fail"`` raises ValueError;
    ``"exit"`` calls stop_self; anything else is recorded and echoed.
    """

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.events: list[str] = []
        self.failures: list[tuple[BaseException, Any]] = []

    async def on_start(self) -> None:
        self.events.append("start")

    async def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "block":
            await message[1].wait()
            return "unblocked"
        if message == "fail":
            raise ValueError("boom")
        if message == "exit":
            self.stop_self()
            return None
        self.received.append(message)
        return message

    async def on_stop(self) -> None:
        self.events.append("stop")

    async def on_failure(self, exc: BaseException, message: Any) -> None:
        self.failures.append((exc, message))


class FailingStart(Actor[Any]):
    """An actor whose on_start raises."""

    def __init__(self) -> None:
        self.failures: list[tuple[BaseException, Any]] = []

    async def on_start(self) -> None:
        raise RuntimeError("cannot start")

    async def on_receive(self, message: Any) -> Any:
        return message

    async def on_failure(self, exc: BaseException, message: Any) -> None:
        self.failures.append((exc, message))


async def test_ask_returns_what_on_receive_returned() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder, name="echo", mailbox_size=10)
        assert await ref.ask("hello") == "hello"
        assert ref.name == "echo"
        await ref.stop()


async def test_tells_are_handled_in_order() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        for i in range(5):
            await ref.tell(i)
        await ref.ask("sync")
        await ref.stop()
    assert actor.received == [0, 1, 2, 3, 4, "sync"]


async def test_tell_waits_while_mailbox_full_and_tell_nowait_raises() -> None:
    release = anyio.Event()
    actor = Recorder()
    delivered = anyio.Event()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="slow", mailbox_size=1)
        await ref.tell(("block", release))
        await anyio.wait_all_tasks_blocked()  # the actor is now inside the blocking handler
        await ref.tell("queued")  # fills the single slot
        with pytest.raises(MailboxFull):
            ref.tell_nowait("overflow")

        async def third() -> None:
            await ref.tell("third")
            delivered.set()

        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        assert not delivered.is_set()
        assert ref.statistics().waiting_senders == 1
        release.set()
        await delivered.wait()
        await ref.stop()
    assert actor.received == ["queued", "third"]


async def test_ask_failure_goes_to_the_asker_and_the_actor_carries_on() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        with pytest.raises(ValueError, match="boom"):
            await ref.ask("fail")
        assert await ref.ask("still here") == "still here"
        assert ref.is_alive
        await ref.stop()
    assert actor.failures == []


async def test_tell_failure_calls_on_failure_and_crashes_the_actor() -> None:
    actor = Recorder()
    with pytest.RaisesGroup(pytest.RaisesExc(ValueError, match="boom")):
        async with anyio.create_task_group() as tg:
            ref = await spawn(tg, lambda: actor, name="a")
            await ref.tell("fail")
            await ref.wait_stopped()
    assert [(str(exc), msg) for exc, msg in actor.failures] == [("boom", "fail")]
    assert "stop" not in actor.events
    assert not ref.is_alive
    with pytest.raises(ActorStopped):
        await ref.tell("late")


async def test_pending_and_in_flight_asks_fail_with_actor_stopped_when_the_actor_is_cancelled() -> None:
    release = anyio.Event()
    errors: dict[str, BaseException] = {}

    async def asker(ref: ActorRef[Any], key: str, message: Any) -> None:
        try:
            await ref.ask(message)
        except ActorStopped as exc:
            errors[key] = exc

    async with anyio.create_task_group() as outer, anyio.create_task_group() as actor_group:
        ref = await spawn(actor_group, Recorder, name="a")
        outer.start_soon(asker, ref, "in_flight", ("block", release))
        await anyio.wait_all_tasks_blocked()
        outer.start_soon(asker, ref, "queued", "later")
        await anyio.wait_all_tasks_blocked()
        actor_group.cancel_scope.cancel()
    assert set(errors) == {"in_flight", "queued"}
    assert "while handling" in str(errors["in_flight"])
    assert not ref.is_alive
    with pytest.raises(ActorStopped):
        await ref.ask("late")
    with pytest.raises(ActorStopped):
        ref.tell_nowait("late")


class Deferring(Actor[Any]):
    """Answers a request at a later message: ``("hold", slot)`` keeps the slot, ``("give", value)`` resolves it."""

    def __init__(self) -> None:
        self.held: list[Slot[Any]] = []

    async def on_receive(self, message: Any) -> None:
        if message[0] == "hold":
            self.held.append(message[1])
        elif message[0] == "give":
            self.held.pop(0).resolve(message[1])
        elif message[0] == "fail":
            raise ValueError("boom")
        elif message[0] == "block":
            await message[2].wait()


async def test_a_request_is_answered_when_the_actor_hands_its_slot_over_later() -> None:
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Deferring, name="d")
        first: Slot[Any] = Slot()
        await ref.request(("hold", first), first)
        await anyio.wait_all_tasks_blocked()
        assert not first.done  # on_receive returned: the actor, not the kernel, answers it
        await ref.tell(("give", "answer"))
        assert await first.wait() == "answer"
        failing: Slot[Any] = Slot()
        await ref.request(("fail", failing), failing)
        with pytest.raises(ValueError, match="boom"):
            await failing.wait()
        assert ref.is_alive  # a failed request goes back to its caller; the actor goes on
        await ref.stop()


async def test_requests_the_actor_never_took_fail_with_actor_stopped_naming_it() -> None:
    release = anyio.Event()
    in_flight: Slot[Any] = Slot()
    queued: Slot[Any] = Slot()
    async with anyio.create_task_group() as actor_group:
        ref = await spawn(actor_group, Deferring, name="d")
        await ref.request(("block", in_flight, release), in_flight)
        await ref.request(("hold", queued), queued)
        await anyio.wait_all_tasks_blocked()
        actor_group.cancel_scope.cancel()
    for slot in (in_flight, queued):
        with pytest.raises(ActorStopped) as caught:
            await slot.wait()
        assert caught.value.actor == ref.name == "d"
    with pytest.raises(ActorStopped):
        await ref.request(("hold", Slot()), Slot())


async def test_stop_drains_queued_messages_then_runs_on_stop() -> None:
    release = anyio.Event()
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        await ref.tell(("block", release))
        await ref.tell(1)
        await ref.tell(2)

        async def stopper() -> None:
            await ref.stop()

        tg.start_soon(stopper)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ActorStopped):
            await ref.tell(3)  # intake is closed while draining
        release.set()
        await ref.wait_stopped()
    assert actor.received == [1, 2]
    assert actor.events == ["start", "stop"]
    assert not ref.is_alive


async def test_cancelling_the_actor_runs_on_stop() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        tg.cancel_scope.cancel()
    assert actor.events == ["start", "stop"]
    assert not ref.is_alive


async def test_stop_self_without_supervisor_stops_for_good() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        await ref.tell("exit")
        await ref.wait_stopped()
    assert actor.events == ["start", "stop"]
    with pytest.raises(ActorStopped):
        await ref.tell("late")


async def test_ask_is_bounded_by_the_callers_cancel_scope_and_the_actor_goes_on() -> None:
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, Recorder, name="a")
        with pytest.raises(TimeoutError), anyio.fail_after(0.05):
            await ref.ask(("block", release))
        release.set()
        assert await ref.ask("next") == "next"
        await ref.stop()


async def test_on_start_failure_is_raised_to_the_spawner() -> None:
    actor = FailingStart()
    async with anyio.create_task_group() as tg:
        with pytest.raises(RuntimeError, match="cannot start"):
            await spawn(tg, lambda: actor, name="a")
    assert [str(exc) for exc, _ in actor.failures] == ["cannot start"]
    assert actor.failures[0][1] is None


async def test_spawn_hands_out_a_ref_before_any_message_and_sets_actor_ref() -> None:
    actor = Recorder()
    async with anyio.create_task_group() as tg:
        ref = await spawn(tg, lambda: actor, name="a")
        assert actor.ref is ref
        assert actor.events == ["start"]
        assert "alive" in repr(ref)
        await ref.stop()


def test_refs_are_made_only_by_the_kernel() -> None:
    with pytest.raises(TypeError):
        ActorRef("rogue", 10)


async def test_a_woken_slot_hands_nothing_over_until_a_value_comes() -> None:
    slot: Slot[str] = Slot()
    slot.wake()
    with anyio.fail_after(1):
        await slot.wait_done()  # woken
    assert not slot.done
    with pytest.raises(RuntimeError, match="nothing was handed over"):
        slot.result()
    slot.resolve("late")  # a hand-over after the wake-up still counts, once
    slot.fail(ValueError("ignored"))
    assert slot.done
    assert slot.result() == "late"
