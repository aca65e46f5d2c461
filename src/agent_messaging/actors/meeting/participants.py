"""Hosted meeting participants: agents whose turns a handler here takes attend by themselves, wherever the meeting runs.

This runtime takes an agent's turns when it has a turn handler for it
(``register_turn_handler``, or a hosted ``Agent`` with ``on_turn``) and owns
the agent (its claim in ``agent_hosts``, which records that it takes turns).
For each meeting such an agent takes part in, a task attends, and on each turn
runs the handler (cut off shortly after the turn's deadline) and speaks its
answer, or passes when the answer is None or invalid; a handler that raises
passes the floor and the error is logged with its traceback.

The meeting may be run here or by another runtime: the task's commands go
through ``am.meeting`` either way. It learns of a meeting when this runtime
starts running it, from the NOTIFY that the meeting's creation sends
(``mt:<meeting>:<agent>``), and at every sweep (one query for all its agents).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..._log import get_logger
from ..._tracing import span, use
from ...errors import AgentMessagingError, InvalidMessage, MeetingEnded, NotYourTurn, TurnTimedOut
from ...models import ParticipantStatus, Turn
from ...persistence._rows import as_uuid
from ...persistence.store import meetings as store
from ..registry import Registry, TurnHandler
from ..services import Services
from .actor import MeetingHandle
from .types import Command, Op, clock_deadline, turn_attributes

__all__ = ["HostedParticipants"]

T = TypeVar("T")
log = get_logger("agent_messaging.meeting")
_SLACK = 0.05  # a hosted turn handler is cancelled this long after its turn's deadline
#: Runs a participant's command wherever the meeting is run (``Meetings._participant_command``).
Submit = Callable[[UUID, Command[Any]], Awaitable["Turn[Any] | None"]]


class HostedParticipants(Generic[T]):
    """The participant tasks of the agents whose turns are taken here. Run it with ``task_group.start``."""

    def __init__(self, services: Services[T], registry: Registry[T], takes_turns: Callable[[str], bool]) -> None:
        self.services = services
        self.registry = registry
        self.takes_turns = takes_turns
        self.submit: Submit | None = None
        self._running: dict[tuple[UUID, str], anyio.CancelScope] = {}
        self._sweeping = False
        self._tg: TaskGroup | None = None
        services.news.subscribe(self._on_news)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own the participant tasks until cancelled; first attend the meetings that await this runtime's agents."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await self._find_meetings()
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._tg = None  # before the group closes: nothing starts in it while it does

    def attend(self, meeting_id: UUID, agents: list[str]) -> None:
        """Start a participant task for each of ``agents`` whose turns this runtime takes (once per meeting)."""
        if self._tg is None or self.submit is None:
            return
        for agent in agents:
            handler = self.registry.turn_handler(agent) if self.takes_turns(agent) else None
            if handler is not None and (meeting_id, agent) not in self._running:
                scope = self._running[(meeting_id, agent)] = anyio.CancelScope()
                self._tg.start_soon(self._participate, meeting_id, agent, handler, scope)

    def attend_local(self, handle: MeetingHandle[T]) -> None:
        """This runtime started running a meeting: its participants with turn handlers here attend."""
        agents = [s.agent for s in handle.seats.values() if s.position and s.status is not ParticipantStatus.LEFT]
        self.attend(handle.id, agents)

    def _on_news(self, keys: list[str] | None) -> None:
        if keys is None:
            if not self._sweeping and self._tg is not None:
                self._sweeping = True
                self._tg.start_soon(self._sweep)
            return
        for key in keys:
            if key.startswith("mt:"):
                meeting, _, agent = key[3:].partition(":")
                try:
                    self.attend(UUID(meeting), [agent])
                except ValueError:
                    continue

    async def _sweep(self) -> None:
        try:
            await self._find_meetings()
        except Exception as exc:  # the next sweep tries again
            log.warning("meeting.participants_sweep_failed", error=repr(exc))
        finally:
            self._sweeping = False

    def turns_taken(self, agents: list[str]) -> None:
        """This runtime has just started to take these agents' turns: attend their meetings."""
        if self._tg is not None:
            self._tg.start_soon(self._find_meetings, agents)

    async def _find_meetings(self, only: list[str] | None = None) -> None:
        """Attend the active meetings in which agents whose turns are taken here take part (one query)."""
        agents = [name for name in only or self.registry.turn_agents() if self.takes_turns(name)]
        if not agents:
            return
        for row in await store.meetings_of(self.services.db, agents):
            self.attend(as_uuid(row["meeting_id"]), [row["agent"]])

    async def _turn(self, meeting_id: UUID, command: Command[T]) -> tuple[Turn[T], Any]:
        """The turn ``command`` waits for, and the trace context of the command's span (tracing on)."""
        assert self.submit is not None
        turn = await self.submit(meeting_id, command)
        assert turn is not None
        return turn, command.trace

    def fence(self) -> None:
        """This runtime lost its presence lock: stop every participant task at once (a running turn handler is
        cancelled). The agents' turns are taken again once the runtime has re-claimed them."""
        running, self._running = self._running, {}  # a restore may attend again before they have ended
        for scope in running.values():
            scope.cancel()

    async def _participate(self, meeting_id: UUID, agent: str, handler: TurnHandler, scope: anyio.CancelScope) -> None:
        """Attend, then answer each turn with the handler's return value."""
        try:
            with scope:
                turn, cause = await self._turn(meeting_id, Command(Op.ATTEND, agent))
                while not (turn.ended or turn.left):
                    turn, cause = await self._take_turn(meeting_id, agent, handler, turn, cause)
        except MeetingEnded:
            pass
        except AgentMessagingError as exc:
            log.warning("meeting.hosted_agent_stopped", meeting=str(meeting_id), agent=agent, error=str(exc))
        except Exception:  # never let one participant take the runtime's other tasks down
            log.exception("meeting.hosted_agent_failed", meeting=str(meeting_id), agent=agent)
        finally:
            if self._running.get((meeting_id, agent)) is scope:
                del self._running[(meeting_id, agent)]

    async def _take_turn(
        self, meeting_id: UUID, agent: str, handler: TurnHandler, turn: Turn[T], cause: Any
    ) -> tuple[Turn[T], Any]:
        """Run the handler for ``turn`` and say its answer; the next turn (and its command's trace context).

        With tracing on, the handler runs in a ``meeting turn`` span, a child of ``cause`` (the span of the
        command that waited for the turn), and the command that says its answer is a child of that span.
        """
        reply: Any = None
        deadline = clock_deadline(turn.deadline) + _SLACK
        handled: Any = None  # the turn's span (tracing on)
        try:
            with anyio.CancelScope(deadline=deadline):
                if self.services.tracing:
                    with span("meeting turn", "internal", turn_attributes(turn), parent=cause) as handled:
                        reply = await handler(turn)
                else:
                    reply = await handler(turn)
        except Exception:
            log.exception("meeting.turn_handler_failed", meeting=str(meeting_id), agent=agent)
        if handled is not None:
            with use(handled):
                return await self._answer(meeting_id, agent, reply)
        return await self._answer(meeting_id, agent, reply)

    async def _answer(self, meeting_id: UUID, agent: str, reply: Any) -> tuple[Turn[T], Any]:
        """Speak ``reply`` (pass for None or an invalid one) and wait for the next turn."""
        try:
            if reply is None:
                return await self._turn(meeting_id, Command(Op.PASS, agent))
            try:
                value, text = self.services.codec.prepare(reply)
            except InvalidMessage as exc:
                log.warning("meeting.turn_reply_invalid", meeting=str(meeting_id), agent=agent, error=str(exc))
                return await self._turn(meeting_id, Command(Op.PASS, agent))
            return await self._turn(meeting_id, Command(Op.SPEAK, agent, value, text))
        except (TurnTimedOut, NotYourTurn):
            return await self._turn(meeting_id, Command(Op.ATTEND, agent))
