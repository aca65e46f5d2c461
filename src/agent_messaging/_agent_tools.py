"""The messaging operations as tools for a model: names, parameters, descriptions and results.

One catalog serves the MCP server (``agent_messaging.mcp``) and the tools of
LLM-backed agents (``agent_messaging.llm``). Each tool runs on an
:class:`~agent_messaging.AgentSession` (so it acts as one agent only) and
returns plain JSON data (dicts, lists, strings) with, where it helps, a
``note`` that tells the model what to do next. Errors are the session's
typed ``AgentMessagingError`` s; each adapter turns them into a tool error
with :func:`~agent_messaging._acting.explain`.

:func:`tool_function` turns a :class:`ToolSpec` into an ``async def`` whose
signature (``Annotated`` types with descriptions) is what both the MCP SDK and
pydantic-ai read to build the tool's JSON schema.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from ._acting import MAX_READ, AgentSession
from ._tool_views import agent_view, event_view, jsonable, message_view, status_view, turn_view

__all__ = ["LLM_TOOLS", "ToolSpec", "tool_function", "tool_specs"]

#: The tools a hosted LLM agent gets by default: none of them claims its unread messages (its handler
#: gets those) or blocks on a meeting turn (``on_turn`` takes its turns).
LLM_TOOLS = ("list_agents", "send_note", "call_agent", "meeting_status", "meeting_history")

Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, what it does (for the model), its parameters, and ``run(session, **arguments)``."""

    name: str
    description: str
    params: tuple[inspect.Parameter, ...]
    run: Run


def tool_function(
    spec: ToolSpec, call: Callable[[dict[str, Any]], Awaitable[Any]], extra: Sequence[inspect.Parameter] = ()
) -> Callable[..., Awaitable[Any]]:
    """An ``async def name(**arguments)`` calling ``call(arguments)``, with ``extra`` + the spec's parameters."""

    async def tool(**arguments: Any) -> Any:
        return await call(arguments)

    params = [*extra, *spec.params]
    tool.__name__ = tool.__qualname__ = spec.name
    tool.__doc__ = spec.description
    tool.__signature__ = inspect.Signature(params, return_annotation=Any)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in params} | {"return": Any}
    return tool


def param(name: str, annotation: Any, description: str, default: Any = inspect.Parameter.empty, **rules: Any) -> Any:
    """A keyword-only parameter whose type carries its description (and validation rules) for the schema."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, Field(description=description, **rules)],
    )


# ---------------------------------------------------------------------------- the tools


def tool_specs(message_type: Any, max_wait: float) -> dict[str, ToolSpec]:
    """Every tool, by name, for a runtime whose messages are ``message_type`` and waits capped at ``max_wait``."""
    if message_type is Any:
        what = "Plain text, or a JSON value (an object, a list...) if the recipient expects structured data."
    else:
        what = f"A {getattr(message_type, '__name__', message_type)} (JSON): the message type of this system."
    message = param("message", message_type, "The message. " + what)
    to = param("to", str, "The id of the agent (see list_agents).")
    meeting = param("meeting_id", str, "The meeting's id (create_meeting returns it).")
    wait = param(
        "wait",
        float,
        f"Seconds to wait for your next turn (at most {max_wait:g}); the meeting goes on if it is not over by then.",
        max_wait,
        gt=0,
    )
    timeout = param("timeout", float, f"Seconds to wait (at most {max_wait:g}).", max_wait, gt=0)
    from_agent = param("from_agent", str | None, "Only messages from this agent (default: from anyone).", None)
    next_speaker = param(
        "next_speaker", str | None, "Give the floor to this participant (default: the next in turn).", None
    )
    specs = [
        ToolSpec(
            "list_agents",
            "List the agents of your organization that you can message and meet: their ids, names and metadata.",
            (),
            _list_agents,
        ),
        ToolSpec(
            "send_note",
            "Send a one-way note to one or more agents. Returns at once, once the note is stored; no answer is "
            "awaited (use call_agent when you need one).",
            (param("to", str | list[str], "The id of the recipient, or a list of ids (see list_agents)."), message),
            _send_note,
        ),
        ToolSpec(
            "call_agent",
            f"Call another agent and wait for its answer (at most `timeout` seconds, up to {max_wait:g}); returns "
            "the answer. If none comes in time you get an error, and a late answer lands in your unread messages.",
            (to, message, timeout),
            _call_agent,
        ),
        ToolSpec(
            "reply",
            "Answer a call that another agent made to you: the one with `request_id` (a message of kind 'request' "
            "from read_messages), else that agent's oldest unanswered call.",
            (to, message, param("request_id", str | None, "The id of the call (request) you answer.", None)),
            _reply,
        ),
        ToolSpec(
            "read_messages",
            "Read your unread messages, oldest first; each is returned once (it is then marked read). Calls "
            "waiting for your answer have kind 'request': answer them with reply.",
            (from_agent, param("limit", int, "At most this many messages.", 20, ge=1, le=MAX_READ)),
            _read_messages,
        ),
        ToolSpec(
            "wait_for_message",
            f"Wait for your next message (at most `timeout` seconds, up to {max_wait:g}) and return it, marked "
            "read; returns at once if one is unread.",
            (from_agent, timeout),
            _wait_for_message,
        ),
        ToolSpec(
            "create_meeting",
            "Create a turn-based meeting that you host with the given participants (agents of your organization). "
            "Then they attend (attend_meeting) and you open it with start_meeting.",
            (
                param("participants", list[str], "The ids of the participants, in speaking order."),
                param(
                    "turn_duration",
                    float | None,
                    "Seconds each turn may last (default: the system's; usually no limit).",
                    None,
                ),
            ),
            _create_meeting,
        ),
        ToolSpec(
            "attend_meeting",
            "Join a meeting you take part in (or come back to it) and wait for your turn. Returns your turn with "
            "everything said since you last looked; call it again if your turn has not come yet.",
            (meeting, wait),
            _attend_meeting,
        ),
        ToolSpec(
            "start_meeting",
            "Open a meeting you host with your first message, once every participant attends; the floor passes on "
            "and you wait for your next turn.",
            (meeting, message, next_speaker, wait),
            _start_meeting,
        ),
        ToolSpec(
            "speak",
            "Say something in a meeting while you hold the floor; the floor then passes on and you wait for your "
            "next turn.",
            (meeting, message, next_speaker, wait),
            _speak,
        ),
        ToolSpec(
            "pass_turn",
            "Give up the floor without speaking; then wait for your next turn.",
            (meeting, wait),
            _pass_turn,
        ),
        ToolSpec("leave_meeting", "Leave a meeting you take part in (its host ends it instead).", (meeting,), _leave),
        ToolSpec(
            "end_meeting",
            "End a meeting you host, with an optional closing message; everyone's wait ends.",
            (meeting, param("message", message_type | None, "An optional closing message. " + what, None)),
            _end_meeting,
        ),
        ToolSpec(
            "meeting_status",
            "The state of a meeting you take part in: who holds the floor, the turn and its deadline, participants.",
            (meeting,),
            _meeting_status,
        ),
        ToolSpec(
            "meeting_history",
            "Everything said and done in a meeting you take part in, oldest first (page with after_seq).",
            (
                meeting,
                param("after_seq", int, "Only entries after this sequence number.", 0, ge=0),
                param("limit", int, "At most this many entries.", 100, ge=1, le=1000),
            ),
            _meeting_history,
        ),
    ]
    return {spec.name: spec for spec in specs}


async def _list_agents(s: AgentSession[Any]) -> dict[str, Any]:
    return {"you": s.agent, "agents": [agent_view(a) for a in await s.list_agents()]}


async def _send_note(s: AgentSession[Any], *, to: str | list[str], message: Any) -> dict[str, Any]:
    ids = await s.send_note(to, message)
    return {"sent": [str(i) for i in ids], "to": [to] if isinstance(to, str) else list(to)}


async def _call_agent(
    s: AgentSession[Any],
    *,
    to: str,
    message: Any,
    timeout: float,  # noqa: ASYNC109 - the tool's bounded timeout
) -> dict[str, Any]:
    return {"from": to, "answer": jsonable(await s.call(to, message, timeout=timeout))}


async def _reply(s: AgentSession[Any], *, to: str, message: Any, request_id: str | None = None) -> dict[str, Any]:
    return {"replied": str(await s.reply(to, message, request_id=request_id)), "to": to}


async def _read_messages(s: AgentSession[Any], *, from_agent: str | None = None, limit: int = 20) -> dict[str, Any]:
    messages = await s.read_messages(from_agent=from_agent, limit=limit)
    view: dict[str, Any] = {"messages": [message_view(m) for m in messages]}
    if not messages:
        view["note"] = "No unread messages: wait_for_message waits for the next one."
    return view


async def _wait_for_message(
    s: AgentSession[Any],
    *,
    from_agent: str | None = None,
    timeout: float,  # noqa: ASYNC109 - the tool's bounded timeout
) -> dict[str, Any]:
    return message_view(await s.wait_for_message(from_agent=from_agent, timeout=timeout))


async def _create_meeting(
    s: AgentSession[Any], *, participants: list[str], turn_duration: float | None = None
) -> dict[str, Any]:
    meeting_id = await s.create_meeting(participants, turn_duration=turn_duration)
    return {
        "meeting_id": str(meeting_id),
        "note": "Created. The participants attend with attend_meeting; then open it with start_meeting.",
    }


async def _attend_meeting(s: AgentSession[Any], *, meeting_id: str, wait: float) -> dict[str, Any]:
    return turn_view(meeting_id, await s.attend_meeting(meeting_id, wait=wait), s.bounded(wait), "You attend.")


async def _start_meeting(
    s: AgentSession[Any], *, meeting_id: str, message: Any, next_speaker: str | None = None, wait: float
) -> dict[str, Any]:
    turn = await s.start_meeting(meeting_id, message, next_speaker=next_speaker, wait=wait)
    return turn_view(meeting_id, turn, s.bounded(wait), "The meeting has started.")


async def _speak(
    s: AgentSession[Any], *, meeting_id: str, message: Any, next_speaker: str | None = None, wait: float
) -> dict[str, Any]:
    turn = await s.speak(meeting_id, message, next_speaker=next_speaker, wait=wait)
    return turn_view(meeting_id, turn, s.bounded(wait), "You spoke and the floor passed on.")


async def _pass_turn(s: AgentSession[Any], *, meeting_id: str, wait: float) -> dict[str, Any]:
    turn = await s.pass_turn(meeting_id, wait=wait)
    return turn_view(meeting_id, turn, s.bounded(wait), "You passed and the floor moved on.")


async def _leave(s: AgentSession[Any], *, meeting_id: str) -> dict[str, Any]:
    await s.leave_meeting(meeting_id)
    return {"meeting_id": meeting_id, "left": True}


async def _end_meeting(s: AgentSession[Any], *, meeting_id: str, message: Any = None) -> dict[str, Any]:
    await s.end_meeting(meeting_id, message=message)
    return {"meeting_id": meeting_id, "ended": True}


async def _meeting_status(s: AgentSession[Any], *, meeting_id: str) -> dict[str, Any]:
    return status_view(await s.meeting_status(meeting_id))


async def _meeting_history(
    s: AgentSession[Any], *, meeting_id: str, after_seq: int = 0, limit: int = 100
) -> dict[str, Any]:
    events = await s.meeting_history(meeting_id, after_seq=after_seq, limit=limit)
    return {"meeting_id": meeting_id, "events": [event_view(e) for e in events]}
