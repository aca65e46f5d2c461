"""Hosted meeting participants: agents with a turn handler here attend by themselves and speak what it returns.

For every meeting this runtime runs, each participant with a turn handler in
this runtime (``register_turn_handler``, or a hosted ``Agent`` class with
``on_turn``) gets a task: it attends, and on each turn runs the handler (cut
off shortly after the turn's deadline) and speaks its answer, or passes when
the answer is None or invalid. A handler that raises passes the floor; the
error is logged with its traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ...errors import AgentMessagingError, InvalidMessage, MeetingEnded, NotYourTurn, TurnTimedOut
from ...models import ParticipantStatus, Turn
from ..registry import Registry, TurnHandler
from ..services import Codec
from .actor import MeetingHandle
from .types import Command, Op, clock_deadline

__all__ = ["HostedParticipants"]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.meeting")
_SLACK = 0.05  # a hosted turn handler is cancelled this long after its turn's deadline
Submit = Callable[[MeetingHandle[Any], Command[Any]], Awaitable["Turn[Any] | None"]]


class HostedParticipants(Generic[T]):
    """The participant tasks of the agents whose turns are taken here. Run it with ``task_group.start``."""

    def __init__(self, registry: Registry[T], codec: Codec[T], submit: Submit) -> None:
        self.registry = registry
        self.codec = codec
        self.submit = submit
        self._tg: TaskGroup | None = None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the participant tasks until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None

    def attend(self, handle: MeetingHandle[T]) -> None:
        """Start a participant task for each of the meeting's participants whose turns are taken here."""
        if self._tg is None:
            return
        for seat in handle.seats.values():
            handler = self.registry.turn_handler(seat.agent) if seat.position else None
            if handler is not None and seat.status is not ParticipantStatus.LEFT:
                self._tg.start_soon(self._participate, handle, seat.agent, handler)

    async def _turn(self, handle: MeetingHandle[T], command: Command[T]) -> Turn[T]:
        turn = await self.submit(handle, command)
        assert turn is not None
        return turn

    async def _participate(self, handle: MeetingHandle[T], agent: str, handler: TurnHandler) -> None:
        """Attend, then answer each turn with the handler's return value."""
        try:
            turn = await self._turn(handle, Command(Op.ATTEND, agent))
            while not (turn.ended or turn.left):
                turn = await self._take_turn(handle, agent, handler, turn)
        except MeetingEnded:
            pass
        except AgentMessagingError as exc:
            log.warning("meeting.hosted_agent_stopped", meeting=str(handle.id), agent=agent, error=str(exc))
        except Exception:  # never let one participant take the runtime's other tasks down
            log.exception("meeting.hosted_agent_failed", meeting=str(handle.id), agent=agent)

    async def _take_turn(self, handle: MeetingHandle[T], agent: str, handler: TurnHandler, turn: Turn[T]) -> Turn[T]:
        reply: Any = None
        deadline = clock_deadline(turn.deadline) + _SLACK
        try:
            with anyio.CancelScope(deadline=deadline):
                reply = await handler(turn)
        except Exception:
            log.exception("meeting.turn_handler_failed", meeting=str(handle.id), agent=agent)
        try:
            if reply is None:
                return await self._turn(handle, Command(Op.PASS, agent))
            try:
                value, text = self.codec.prepare(reply)
            except InvalidMessage as exc:
                log.warning("meeting.turn_reply_invalid", meeting=str(handle.id), agent=agent, error=str(exc))
                return await self._turn(handle, Command(Op.PASS, agent))
            return await self._turn(handle, Command(Op.SPEAK, agent, value, text))
        except (TurnTimedOut, NotYourTurn):
            return await self._turn(handle, Command(Op.ATTEND, agent))
