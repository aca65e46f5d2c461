"""Meeting commands across processes: a caller in one runtime, the meeting's actor in another.

A meeting is run by one actor in one runtime (the single writer of its state).
A call from any other runtime becomes a durable row in ``meeting_commands``
plus a NOTIFY naming the meeting (``m:<id>``); the runner's actor takes the
pending rows, applies each once (``applied_at`` commits with the transition it
causes) and, when the command's result is ready (the caller's next turn, say),
writes it to the row with a NOTIFY naming the command (``mc:<id>``). The caller
waits on that key and on the meeting's end (``me:<id>``), re-reading the row
at each wake-up (and at every sweep, as NOTIFYs can be lost). The end answers
the commands its runner never took in its own commit; a command written while
the end commits is closed by its caller, who finds the meeting ended.

Nothing is lost when the runner dies: the runtime that takes the meeting over
loads the commands still without a result, re-applies those never applied, and
waits the applied ones out (the callers keep waiting on their rows). A caller
whose meeting has no live runner takes it over itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast

import anyio
from pydantic import TypeAdapter

from ..._log import get_logger
from ...errors import AgentMessagingError, MeetingEnded, error_from_json, error_to_json
from ...models import AgentInfo, MeetingState, Turn
from ...persistence.store import hosts, meetings as store
from ...persistence.writer import Write
from ...runtime._slot import Slot
from ..envelope import fast_uuid4
from ..services import Services
from .types import Command

__all__ = [
    "POLL",
    "Poll",
    "RemoteCaller",
    "RemoteSlot",
    "command_key",
    "ended_key",
    "ended_write",
    "flush",
    "meeting_key",
    "turns_key",
]

T = TypeVar("T")
log = get_logger("agent_messaging.meeting")
_TURN: TypeAdapter[Turn[Any] | None] = TypeAdapter(Turn[Any] | None)


def meeting_key(meeting_id: uuid.UUID) -> str:
    """The NOTIFY key that tells a meeting's runner it has commands to take."""
    return f"m:{meeting_id}"


def command_key(command_id: uuid.UUID) -> str:
    """The NOTIFY key that tells a caller its command has a result."""
    return f"mc:{command_id}"


def ended_key(meeting_id: uuid.UUID) -> str:
    """The NOTIFY key that tells the callers waiting on a meeting's commands that it ended."""
    return f"me:{meeting_id}"


def turns_key(meeting_id: uuid.UUID, agent: str) -> str:
    """The NOTIFY key that tells the runtime taking ``agent``'s turns that a meeting awaits it."""
    return f"mt:{meeting_id}:{agent}"


class Poll:
    """The message that makes a meeting actor take the commands other runtimes wrote for it."""


POLL = Poll()


class RemoteSlot(Slot["Turn[Any] | None"]):
    """Where a caller in another runtime waits: resolving it queues the result to be written to its row."""

    __slots__ = ("command_id", "outbox")

    def __init__(self, command_id: uuid.UUID, outbox: list[RemoteSlot]) -> None:
        super().__init__()
        self.command_id = command_id
        self.outbox = outbox

    def resolve(self, value: Turn[Any] | None) -> None:
        """Hand over the result (written to the command's row by the next :func:`flush`)."""
        if not self.done:
            super().resolve(value)
            self.outbox.append(self)

    def fail(self, error: BaseException) -> None:
        """Hand over the error (written to the command's row by the next :func:`flush`)."""
        if not self.done:
            super().fail(error)
            self.outbox.append(self)

    def resolve_written(self, value: Turn[Any] | None) -> None:
        """Hand over a result already written to the command's row (in the transition's own commit)."""
        if not self.done:
            super().resolve(value)

    def row_of(self, value: Turn[Any] | None) -> tuple[uuid.UUID, str | None, str | None]:
        """The ``store.meetings.COMMAND_DONE`` row of a result ``value`` (to write it before handing it over)."""
        return (self.command_id, _TURN.dump_json(value).decode(), None)

    def row(self) -> tuple[uuid.UUID, str | None, str | None]:
        """The ``store.meetings.COMMAND_DONE`` row of this result."""
        error = self.error
        if error is None:
            return self.row_of(self.result())
        if not isinstance(error, AgentMessagingError):
            error = AgentMessagingError(f"the meeting could not handle the command: {type(error).__name__}: {error}")
        return (self.command_id, None, _error_text(error))


_TURN_ERRORS: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _error_text(error: AgentMessagingError) -> str:
    """The JSON text of a command's error, as its row stores it."""
    return _TURN_ERRORS.dump_json(error_to_json(error)).decode()


async def flush(services: Services[Any], outbox: list[RemoteSlot]) -> None:
    """Write the results waiting in ``outbox`` and tell their callers (NOTIFY, and this runtime's signals)."""
    if not outbox:
        return
    slots = outbox[:]
    del outbox[:]
    keys = [command_key(slot.command_id) for slot in slots]
    try:
        await services.writer.write([Write(store.COMMAND_DONE, slot.row()) for slot in slots], notify=keys)
    except Exception as exc:  # the results stay queued: the next flush writes them
        outbox[:0] = slots
        log.warning("meeting.results_not_written", commands=len(slots), error=repr(exc))
        return
    services.signals.fire(keys)  # a caller in this runtime (after a takeover) hears it too


def ended_write(meeting_id: uuid.UUID, taken: set[uuid.UUID]) -> Write:
    """The write, in a meeting's end, that answers ``MeetingEnded`` to the commands of other runtimes its runner
    never took (``taken``: those it did); the end's NOTIFY (:func:`ended_key`) wakes their callers."""
    return Write(store.COMMANDS_ENDED, (meeting_id, _error_text(MeetingEnded(meeting_id)), ",".join(map(str, taken))))


class RemoteCaller(Generic[T]):
    """Sends commands to meetings run by other runtimes and waits for their results."""

    def __init__(self, services: Services[T], take_over: Callable[[uuid.UUID], Awaitable[bool]]) -> None:
        self.services = services
        self.take_over = take_over
        turn: Any = cast(Any, Turn)[services.codec.message_type]
        self._turn: TypeAdapter[Turn[T] | None] = TypeAdapter(turn | None)

    async def _close(self, command_id: uuid.UUID, meeting_id: uuid.UUID) -> None:
        row = (command_id, None, _error_text(MeetingEnded(meeting_id)))
        try:
            await self.services.writer.write([Write(store.COMMAND_DONE, row)])
        except Exception as exc:  # the caller's answer stands; the row stays open
            log.warning("meeting.command_not_closed", command=str(command_id), error=repr(exc))

    async def submit(self, meeting_id: uuid.UUID, agent: AgentInfo, command: Command[T]) -> Turn[T] | None:
        """Write ``command`` for the meeting's runner and wait (holding no connection) for its result."""
        services = self.services
        command_id = fast_uuid4()
        key, ended = command_key(command_id), ended_key(meeting_id)
        event = services.signals.event(key, ended)
        row = (
            command_id,
            meeting_id,
            command.op.value,
            agent.id,
            command.message_json,
            command.next_speaker,
            services.runtime_id,
        )
        await services.writer.write([Write(store.COMMAND, row)], notify=[meeting_key(meeting_id)])
        grace = math.inf  # set once the meeting ended with this command applied: its last turn is on its way
        while True:
            result = await store.command_result(services.db, command_id, hosts.ALIVE)
            if result is not None and result["done"]:
                if result["error"] is not None:
                    raise error_from_json(_TURN_ERRORS.validate_json(result["error"]))
                return self._turn.validate_json(result["result"] or "null")
            if result is None:
                raise MeetingEnded(meeting_id)
            if result["status"] == MeetingState.ENDED.value:
                if not result["applied"]:  # it ended before its runner took the command: close the row
                    await self._close(command_id, meeting_id)
                    raise MeetingEnded(meeting_id)
                if grace == math.inf:  # its runner writes the result right after the end
                    grace = anyio.current_time() + services.config.poll_interval
                elif anyio.current_time() >= grace:  # the runner died before it did
                    raise MeetingEnded(meeting_id)
            elif not result["runner_alive"]:
                await self.take_over(meeting_id)  # its actor takes the pending commands, ours among them
            with anyio.move_on_after(grace - anyio.current_time()):
                await event.wait()
            event = services.signals.event(key, ended)
