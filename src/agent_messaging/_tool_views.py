"""How the model tools present results: messages, agents, meeting events, status and turns as JSON data.

Each view keeps what a model needs to act (ids to answer or address, who said
what, whose turn it is) and, where it helps, a ``note`` saying what to do next.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic_core import to_jsonable_python

from .models import AgentInfo, MeetingEvent, MeetingStatus, Message, MessageKind, Turn

__all__ = ["agent_view", "event_view", "jsonable", "message_view", "status_view", "turn_view"]


def jsonable(value: Any) -> Any:
    """``value`` as JSON data (models dumped, UUIDs and times as strings)."""
    return to_jsonable_python(value)


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def message_view(message: Message[Any]) -> dict[str, Any]:
    """A message as the model sees it."""
    view: dict[str, Any] = {
        "id": str(message.id),
        "kind": message.kind.value,
        "from": message.sender,
        "to": message.recipient,
        "message": jsonable(message.payload),
        "sent_at": _time(message.created_at),
    }
    if message.in_reply_to is not None:
        view["in_reply_to"] = str(message.in_reply_to)
    if message.kind is MessageKind.REQUEST:
        view["note"] = f"{message.sender} is waiting for your answer: reply(to={message.sender!r}, request_id=id)"
    return view


def agent_view(agent: AgentInfo) -> dict[str, Any]:
    """An agent of the organization: its id (to address it), name and metadata."""
    view: dict[str, Any] = {"id": agent.external_id, "name": agent.name}
    if agent.metadata:
        view["metadata"] = jsonable(agent.metadata)
    if agent.status.value != "active":
        view["status"] = agent.status.value
    return view


def event_view(event: MeetingEvent[Any]) -> dict[str, Any]:
    """One meeting history entry."""
    view: dict[str, Any] = {"seq": event.seq, "type": event.type.value, "agent": event.agent}
    if event.message is not None:
        view["message"] = jsonable(event.message)
    data = dict(event.data)
    if "system_message" in data:
        view["note"] = data.pop("system_message")
    if data:
        view["data"] = jsonable(data)
    view["at"] = _time(event.created_at)
    return view


def status_view(status: MeetingStatus) -> dict[str, Any]:
    """A meeting's state, floor holder, turn and participants."""
    return {
        "meeting_id": str(status.meeting_id),
        "state": status.state.value,
        "host": status.host,
        "floor_holder": status.floor_holder,
        "turn_number": status.turn_number,
        "turn_deadline": _time(status.turn_deadline),
        "turn_duration": status.turn_duration,
        "participants": [{"agent": p.agent, "status": p.status.value, "host": p.is_host} for p in status.participants],
    }


def turn_view(meeting_id: UUID | str, turn: Turn[Any] | None, waited: float, pending: str) -> dict[str, Any]:
    """What a meeting operation that waits for the next turn returns; ``pending`` says what happened if none came."""
    if turn is None:
        return {
            "meeting_id": str(meeting_id),
            "your_turn": False,
            "note": f"{pending} Your turn has not come within {waited:g}s; the meeting goes on: "
            "call attend_meeting to keep waiting for it.",
        }
    view: dict[str, Any] = {"meeting_id": str(turn.meeting_id), "messages": [event_view(e) for e in turn.messages]}
    if turn.ended:
        view.update(ended=True, ending_message=jsonable(turn.ending_message), note="The meeting has ended.")
    elif turn.left:
        view.update(left=True, note="You have left the meeting.")
    else:
        deadline = f" before {_time(turn.deadline)}" if turn.deadline is not None else ""
        view.update(
            your_turn=True,
            turn_number=turn.turn_number,
            deadline=_time(turn.deadline),
            note=f"It is your turn: call speak (or pass_turn){deadline}.",
        )
    return view
