"""LLM-backed hosted agents (extra ``[llm]``): a pydantic-ai agent answers messages and takes meeting turns.

::

    import pydantic_ai
    from agent_messaging.llm import LLMAgent

    am.host("analyst", LLMAgent(pydantic_ai.Agent("openai:gpt-4o", instructions="You are a careful analyst.")))

- **Messages.** For each message the model runs with the recent history of the
  agent's exchanges with the sender as context (the last ``history`` messages
  between the two before this one, notes included, read with
  ``am.conversation.get_recent_messages``; oldest first: the sender's as user
  turns, the agent's own as model turns). Its answer is the return value of
  ``on_message``: the reply to a call. Notes and chat lines are not answered
  (the runtime answers only calls); the model acts on them through its tools.
- **Meetings.** ``on_turn`` gives the model the meeting's recent history (what
  was said since its last turn and before, its own lines as model turns) and
  speaks its answer. The model passes the floor by answering ``PASS`` alone
  (``pass_word``; an empty answer or ``None`` passes too).
- **Tools.** The model gets the messaging operations as tools, acting as this
  agent only (through :class:`~agent_messaging.AgentSession`): ``list_agents``,
  ``send_note``, ``call_agent`` (waits at most ``max_wait`` seconds),
  ``meeting_status`` and ``meeting_history``. So one LLM agent can call
  another, or send a note, as a tool call. A refused operation comes back to
  the model as ``{"error": "..."}`` saying what to do. ``tools=False`` gives
  none. A call made from a tool counts for deadlock detection: an agent that
  calls back into its caller gets ``DeadlockDetected`` at once.
- **Errors.** An exception of the model (or of pydantic-ai) propagates like
  any handler's: a call is retried up to ``max_attempts`` times, then its
  caller gets ``HandlerError`` naming the error (no dead letter); a note or
  chat line is retried, then dead-lettered; a failing turn passes the floor.
  The agent keeps running.
- **Message types.** With an untyped or ``str`` runtime the model's text is the
  message. With a pydantic message type give the pydantic-ai agent that
  ``output_type``, or override :meth:`LLMAgent.to_message`.

pydantic-ai runs on asyncio; on trio the model runs on an asyncio loop in a
worker thread and its tools run back on trio (``agent_messaging._on_asyncio``).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, UserPromptPart
from pydantic_ai.toolsets import FunctionToolset

from ._acting import AgentSession, explain
from ._agent_tools import LLM_TOOLS, ToolSpec, tool_function, tool_specs
from ._on_asyncio import Portal, run_on_asyncio
from .actors.agent import Agent, MessageContext
from .errors import AgentMessagingError, LifecycleError
from .models import AgentInfo, MeetingEvent, MeetingEventType, MeetingStatus, Message, MessageKind, Turn

__all__ = ["PASS", "LLMAgent"]

T = TypeVar("T")

#: What a model answers, alone, to pass the floor in a meeting.
PASS = "PASS"

_ASKS = {
    MessageKind.REQUEST: "{sender} calls you and waits for your answer (what you answer now is sent back):",
    MessageKind.CHAT: "{sender} writes to you (no answer is sent back; use your tools to act on it):",
    MessageKind.ONE_WAY: "{sender} sends you a note (no answer is sent back; use your tools to act on it):",
    MessageKind.REPLY: "{sender} answered a call of yours after your call had stopped waiting:",
    MessageKind.END: "{sender} ended your conversation, saying:",
}


class LLMAgent(Agent[T]):
    """A hosted agent whose answers and meeting turns come from a pydantic-ai agent.

    ``LLMAgent(llm, history=20, tools=True, max_wait=60.0, pass_word="PASS")``: ``history`` is how many
    earlier messages (or meeting entries) the model sees, ``max_wait`` caps the waits of its tools.
    Host an instance: ``am.host("analyst", LLMAgent(...))``.
    """

    def __init__(
        self,
        llm: PydanticAgent[Any, Any],
        *,
        history: int = 20,
        tools: bool = True,
        max_wait: float = 60.0,
        pass_word: str = PASS,
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history must be a non-negative int, not {history!r}")
        self.llm = llm
        self.history = history
        self.tools = tools
        self.max_wait = max_wait
        self.pass_word = pass_word
        self._session: AgentSession[T] | None = None
        self._me: AgentInfo | None = None

    # ------------------------------------------------------------------ hooks

    async def on_message(self, message: T, ctx: MessageContext[T]) -> T | None:
        """Run the model on ``message`` with the recent history of this pair; its answer is the reply."""
        history = await self._pair_history(ctx)
        prompt = _ASKS[ctx.kind].format(sender=ctx.sender) + "\n" + self.render(message)
        return self.to_message(await self.run(prompt, history))

    async def on_turn(self, turn: Turn[T]) -> T | None:
        """Run the model on the meeting's recent history; speak its answer (``PASS`` passes the floor)."""
        status = await self.messaging.meeting.get_meeting_status(turn.meeting_id)
        history = await self._meeting_history(turn)
        output = await self.run(self.turn_prompt(turn, status), history)
        if output is None or (
            isinstance(output, str) and output.strip().rstrip(".").upper() in ("", self.pass_word.upper())
        ):
            return None
        return self.to_message(output)

    # ----------------------------------------------------- for subclasses to adapt

    def turn_prompt(self, turn: Turn[T], status: MeetingStatus) -> str:
        """The prompt of a meeting turn (the meeting's history is already in the model's context)."""
        others = [p.agent for p in status.participants if p.agent != self.agent_id]
        return (
            f"It is your turn {turn.turn_number} in the meeting hosted by {status.host} with {', '.join(others)}. "
            f"Say your contribution briefly, or answer {self.pass_word} alone to let the floor pass."
        )

    def render(self, payload: Any) -> str:
        """A message payload as text for the model (text as is, anything else as JSON)."""
        if isinstance(payload, str):
            return payload
        if isinstance(payload, BaseModel):
            return payload.model_dump_json()
        return json.dumps(payload, default=str, ensure_ascii=False)

    def to_message(self, output: Any) -> T | None:
        """The model's output as a message of the runtime's type (as is by default: the runtime validates it)."""
        result: T | None = output
        return result

    async def run(self, prompt: str, history: list[ModelMessage]) -> Any:
        """Run the model once, with ``history`` as context and the messaging tools; its output."""
        session = self.session
        me = await self._identity()
        instructions = (
            f"You are the agent {me.external_id!r} ({me.name}) of organization {me.organization_external_id!r}, "
            "one of several AI agents who message each other."
        )
        specs = tool_specs(self.messaging.message_type, self.max_wait)
        allowed = [specs[name] for name in LLM_TOOLS] if self.tools else []

        async def main(portal: Portal) -> Any:
            toolsets = [FunctionToolset([_tool(spec, session, portal) for spec in allowed])] if allowed else []
            result = await self.llm.run(prompt, message_history=history, instructions=instructions, toolsets=toolsets)
            return result.output

        return await run_on_asyncio(main)

    @property
    def session(self) -> AgentSession[T]:
        """The :class:`AgentSession` the tools act through (this agent only)."""
        if self._session is None:
            if getattr(self, "messaging", None) is None:
                raise LifecycleError("this LLMAgent is not hosted: am.host(agent_id, LLMAgent(...)) first")
            self._session = AgentSession(self.messaging, self.agent_id, max_wait=self.max_wait)
        return self._session

    # ----------------------------------------------------------------- context

    async def _identity(self) -> AgentInfo:
        if self._me is None:
            self._me = await self.session.me()
        return self._me

    async def _pair_history(self, ctx: MessageContext[T]) -> list[ModelMessage]:
        """The last ``history`` messages between this agent and the sender, before this one, oldest first."""
        if not self.history:
            return []
        found = await self.messaging.conversation.get_recent_messages(
            self.agent_id, ctx.sender, before=ctx.message_id, limit=self.history
        )
        return [self._from_message(m) for m in reversed(found)]

    def _from_message(self, message: Message[T]) -> ModelMessage:
        text = self.render(message.payload)
        if message.sender == self.agent_id:
            return ModelResponse(parts=[TextPart(text)])
        return ModelRequest(parts=[UserPromptPart(f"[{message.sender}, {message.kind.value}] {text}")])

    async def _meeting_history(self, turn: Turn[T]) -> list[ModelMessage]:
        """The meeting's last ``history`` spoken lines and system entries, oldest first."""
        if not self.history:
            return []
        last = max((e.seq for e in turn.messages), default=0)
        after = max(0, last - 4 * self.history) if last else 0
        events = await self.messaging.meeting.get_meeting_history(turn.meeting_id, after_seq=after)
        lines = [line for line in map(self._from_event, events) if line is not None]
        return lines[-self.history :]

    def _from_event(self, event: MeetingEvent[T]) -> ModelMessage | None:
        E = MeetingEventType
        if event.type is E.AGENT_SPOKE:
            text = self.render(event.message)
            if event.agent == self.agent_id:
                return ModelResponse(parts=[TextPart(text)])
            return ModelRequest(parts=[UserPromptPart(f"[{event.agent}] {text}")])
        notes = {
            E.MEETING_STARTED: f"{event.agent} opened the meeting",
            E.AGENT_TIMED_OUT: str(event.data.get("system_message", f"{event.agent}'s turn timed out")),
            E.AGENT_LEFT: f"{event.agent} left the meeting",
            E.MEETING_ENDED: "the meeting ended",
        }
        note = notes.get(event.type)
        return None if note is None else ModelRequest(parts=[UserPromptPart(f"[meeting] {note}")])


def _tool(spec: ToolSpec, session: AgentSession[Any], portal: Portal) -> Any:
    """The pydantic-ai tool for ``spec``: runs on the runtime's event loop, errors as ``{"error": ...}``."""

    async def invoke(arguments: dict[str, Any]) -> Any:
        try:
            return await spec.run(session, **arguments)
        except AgentMessagingError as exc:
            return {"error": explain(exc, session.agent)}

    return tool_function(spec, partial(portal.call, invoke))
