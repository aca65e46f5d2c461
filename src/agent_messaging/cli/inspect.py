"""Operator commands: ``agents``, ``messages``, ``meetings`` and ``dead-letters``.

They read the database directly (a two-connection pool, no runtime), so they
are cheap and never take part in hosting: inspecting a database never serves
its meetings or claims its agents. ``dead-letters retry`` requeues the message
and sends a NOTIFY so the runtime hosting the agent picks it up at once (its
periodic sweep would find it anyway).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import anyio
import typer

from ..actors.hosting import RESTART_PREFIX
from ..errors import DeadLetterNotFound, InvalidOperation, MeetingNotFound
from ..models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus
from ..persistence.database import Database, Row
from ..persistence.store import hosts, meetings as store, messages as message_store
from ..persistence.store.agents import Agents
from ._common import (
    DsnOption,
    JsonOption,
    fail,
    open_database,
    print_json,
    run_async,
    settings,
    table as print_table,
    to_json,
)

__all__ = ["agents_app", "dead_letters_app", "meetings_app", "messages_app"]

agents_app: typer.Typer = typer.Typer(
    help="Registered agents: where they are hosted, status, unread.", no_args_is_help=True
)
messages_app: typer.Typer = typer.Typer(help="An agent's messages.", no_args_is_help=True)
meetings_app: typer.Typer = typer.Typer(
    help="Meetings: list them, show (and follow) a transcript.", no_args_is_help=True
)
dead_letters_app: typer.Typer = typer.Typer(
    help="Messages whose handler kept failing: list and retry.", no_args_is_help=True
)

_FOLLOW_POLL = 0.5


def _iso(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else to_json(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _payload(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _agent_id(db: Database, external_id: str) -> uuid.UUID:
    return await Agents(db).live_id(external_id)


def _limit(value: int) -> int:
    if not 1 <= value <= 10_000:
        fail(f"--limit must be between 1 and 10000, not {value}", 2)
    return value


# --------------------------------------------------------------------------- agents


@agents_app.command("list")
def agents_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization (external id).")] = None,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Registered agents: organization, status, who hosts them (runtime, host, pid, alive), unread messages,
    restarts and the last handler error."""
    config = settings(dsn)

    async def go() -> tuple[list[Row], dict[str, Row]]:
        async with open_database(config, schema=True) as db:
            rows = await Agents(db).overview(org)
            placed = {str(h["agent_id"]): h for h in await hosts.hosts(db, [uuid.UUID(str(r["id"])) for r in rows])}
            return rows, placed

    rows, placed = run_async(go, dsn=dsn)
    records = []
    for r in rows:
        h = placed.get(str(r["id"]))
        records.append(
            {
                "agent": r["agent"],
                "organization": r["organization"],
                "name": r["name"],
                "status": r["status"],
                "hosted": h is not None and bool(h["alive"]),
                "runtime": h["runtime_id"] if h else None,
                "hostname": h["hostname"] if h else None,
                "pid": h["pid"] if h else None,
                "alive": bool(h["alive"]) if h else None,
                "unread": int(r["unread"]),
                "dead_letters": int(r["dead"]),
                "restarts": int(r["restarts"]),
                "last_error": r["last_error"],
            }
        )
    if as_json:
        print_json(records)
        return
    lines = [
        [
            rec["organization"],
            rec["agent"],
            rec["status"],
            f"{rec['runtime']} on {rec['hostname']} pid {rec['pid']}" if rec["runtime"] else "-",
            "-" if rec["alive"] is None else ("yes" if rec["alive"] else "no (runtime gone)"),
            str(rec["unread"]),
            str(rec["dead_letters"]),
            str(rec["restarts"]),
        ]
        for rec in records
    ]
    title = f"Agents{f' of {org}' if org else ''} ({len(records)})"
    print_table(title, ["org", "agent", "status", "hosted by", "alive", "unread", "dead", "restarts"], lines)


@agents_app.command("restart")
def agents_restart(
    agent: Annotated[str, typer.Argument(metavar="ID", help="The failed agent's external id.")],
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restart a failed agent: the runtime hosting it starts it again (or the next runtime to take it over)."""
    config = settings(dsn)

    async def go() -> str:
        async with open_database(config) as db:
            agents = Agents(db)
            agent_id = await agents.reactivate(agent, RESTART_PREFIX, "cli")
            if agent_id is None:
                info = await agents.get(agent)  # AgentNotFound for an unknown agent
                raise InvalidOperation(
                    f"agent {agent!r} is {info.status.value}, not failed: there is nothing to restart"
                )
            return str(agent_id)

    agent_id = run_async(go, dsn=dsn)
    if as_json:
        print_json({"agent": agent, "id": agent_id, "restarted": True})
    else:
        typer.echo(f"agent {agent} is active again; the runtime hosting it restarts it")


# --------------------------------------------------------------------------- messages


@messages_app.command("list")
def messages_list(
    agent: Annotated[str, typer.Option("--agent", help="Whose received messages.", show_default=False)],
    unread: Annotated[bool, typer.Option("--unread", help="Only messages not read or handled yet.")] = False,
    sender: Annotated[str | None, typer.Option("--from", help="Only messages from this agent.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Messages an agent received, newest first (reading them here does not mark them read)."""
    config = settings(dsn)
    _limit(limit)

    async def go() -> list[Row]:
        async with open_database(config, schema=True) as db:
            recipient = await _agent_id(db, agent)
            source = None if sender is None else await _agent_id(db, sender)
            return await message_store.page(
                db,
                recipient_id=recipient,
                sender_id=source,
                unread_only=unread,
                live_only=True,
                limit=limit,
                cursor=None,
                newest_first=True,
            )

    rows = run_async(go, dsn=dsn)

    def state(r: Row) -> str:
        if r["dead_at"] is not None:
            return "dead-lettered"
        if r["handled_at"] is not None:
            return "handled"
        return "read" if r["read_at"] is not None else "unread"

    if as_json:
        print_json(
            [
                {
                    "seq": r["seq"],
                    "id": str(r["id"]),
                    "kind": r["kind"],
                    "from": r["sender"],
                    "to": r["recipient"],
                    "state": state(r),
                    "attempts": r["attempts"],
                    "payload": _payload(r["payload"]),
                    "created_at": r["created_at"],
                    "read_at": r["read_at"],
                    "conversation_id": str(r["conversation_id"]) if r["conversation_id"] else None,
                    "in_reply_to": str(r["in_reply_to"]) if r["in_reply_to"] else None,
                }
                for r in rows
            ]
        )
        return
    lines = [
        [str(r["seq"]), _iso(r["created_at"]), r["kind"], r["sender"], state(r), _short(_payload(r["payload"]))]
        for r in rows
    ]
    which = "unread messages" if unread else "messages"
    source = f" from {sender}" if sender else ""
    print_table(
        f"{which.capitalize()} of {agent}{source} ({len(rows)}, newest first)",
        ["seq", "at", "kind", "from", "state", "payload"],
        lines,
    )


# --------------------------------------------------------------------------- meetings


def _meeting_json(status: MeetingStatus) -> dict[str, Any]:
    # python mode: times stay datetimes, written by to_json with isoformat() like every other timestamp
    return status.model_dump()


def _event_json(event: MeetingEvent[Any]) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type.value,
        "agent": event.agent,
        "turn_number": event.turn_number,
        "message": event.message,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


def _event_line(event: MeetingEvent[Any]) -> str:
    at = event.created_at.strftime("%H:%M:%S")
    who = event.agent or "-"
    kind = event.type
    if kind is MeetingEventType.AGENT_SPOKE:
        text = f"{who}: {_short(event.message, 200)}"
    elif kind is MeetingEventType.MEETING_STARTED:
        text = f"meeting started by {who}" + (f": {_short(event.message, 200)}" if event.message is not None else "")
    elif kind is MeetingEventType.MEETING_ENDED:
        text = "meeting ended" + (f": {_short(event.message, 200)}" if event.message is not None else "")
    elif kind is MeetingEventType.AGENT_TIMED_OUT:
        text = f"{who} let the turn time out"
    elif kind is MeetingEventType.TURN_CHANGED:
        text = f"floor -> {who}"
    else:
        text = f"{kind.value.replace('_', ' ')}: {who}"
    return f"#{event.seq:<4} {at}  turn {event.turn_number:<3} {text}"


def _meeting_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{value!r} is not a meeting id (a UUID, as 'meetings list' prints)", 2)


@meetings_app.command("list")
def meetings_list(
    active: Annotated[bool, typer.Option("--active", help="Only meetings that have not ended.")] = False,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Meetings, newest first: state, host, floor holder, turn, participants, when created and ended."""
    config = settings(dsn)

    async def go() -> list[store.MeetingListing]:
        async with open_database(config, schema=True) as db:
            return await store.list_meetings_with_times(db, True if active else None)

    listings = run_async(go, dsn=dsn)
    if as_json:
        print_json(
            [
                {
                    **_meeting_json(m.status),
                    "created_at": m.created_at.isoformat(),
                    "started_at": m.started_at.isoformat() if m.started_at else None,
                    "ended_at": m.ended_at.isoformat() if m.ended_at else None,
                }
                for m in listings
            ]
        )
        return
    lines = [
        [
            str(m.status.meeting_id),
            m.status.state.value,
            m.status.host,
            m.status.floor_holder or "-",
            str(m.status.turn_number),
            ", ".join(p.agent for p in m.status.participants if not p.is_host),
            _iso(m.created_at),
            _iso(m.ended_at),
        ]
        for m in listings
    ]
    print_table(
        f"{'Active meetings' if active else 'Meetings'} ({len(listings)})",
        ["id", "state", "host", "floor", "turn", "participants", "created", "ended"],
        lines,
    )


@meetings_app.command("show")
def meetings_show(
    meeting_id: Annotated[str, typer.Argument(metavar="ID", help="The meeting's id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until it ends.")] = False,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """A meeting's status and transcript; with --follow, new events as they happen until the meeting ends."""
    config = settings(dsn)
    mid = _meeting_uuid(meeting_id)

    async def go() -> None:
        async with open_database(config, schema=True) as db:
            status = await store.fetch_status(db, mid)
            if status is None:
                raise MeetingNotFound(mid)
            events = await store.fetch_history(db, _payload, mid, 0, 10_000)
            if as_json and not follow:
                print_json({"meeting": _meeting_json(status), "events": [_event_json(e) for e in events]})
                return
            if as_json:
                typer.echo(to_json({"meeting": _meeting_json(status)}))
            else:
                others = ", ".join(f"{p.agent} ({p.status.value})" for p in status.participants if not p.is_host)
                typer.echo(
                    f"meeting {status.meeting_id}: {status.state.value}, host {status.host}, participants {others}; "
                    f"turn {status.turn_number}, floor {status.floor_holder or '-'}"
                )
            last = 0
            # the meeting_ended event commits with the ended state: seeing it is seeing the end
            ended = status.state is MeetingState.ENDED
            while True:
                for event in events:
                    typer.echo(to_json(_event_json(event)) if as_json else _event_line(event))
                    last = event.seq
                    ended = ended or event.type is MeetingEventType.MEETING_ENDED
                if not follow or ended:
                    return
                await anyio.sleep(_FOLLOW_POLL)
                events = await store.fetch_history(db, _payload, mid, last, 10_000)

    run_async(go, dsn=dsn)


# --------------------------------------------------------------------------- dead letters


@dead_letters_app.command("list")
def dead_letters_list(
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's dead letters.")] = None,
    include_retried: Annotated[bool, typer.Option("--all", help="Include dead letters already retried.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, oldest first.")] = 100,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Messages whose handler failed max_attempts times, oldest first."""
    config = settings(dsn)
    _limit(limit)

    async def go() -> list[Row]:
        async with open_database(config, schema=True) as db:
            who = None if agent is None else await _agent_id(db, agent)
            return await message_store.dead_letters(db, who, include_retried=include_retried, limit=limit)

    rows = run_async(go, dsn=dsn)
    if as_json:
        print_json(
            [
                {
                    "id": r["id"],
                    "message_id": str(r["message_id"]),
                    "agent": r["agent"],
                    "sender": r["sender"],
                    "attempts": r["attempts"],
                    "error": r["error"],
                    "payload": _payload(r["payload"]),
                    "created_at": r["created_at"],
                    "retried_at": r["retried_at"],
                }
                for r in rows
            ]
        )
        return
    lines = [
        [
            str(r["id"]),
            r["agent"],
            r["sender"],
            str(r["attempts"]),
            _short(r["error"], 50),
            _iso(r["created_at"]),
            _iso(r["retried_at"]),
        ]
        for r in rows
    ]
    print_table(
        f"Dead letters{f' of {agent}' if agent else ''} ({len(rows)})",
        ["id", "agent", "from", "attempts", "error", "at", "retried"],
        lines,
    )


@dead_letters_app.command("retry")
def dead_letters_retry(
    dead_letter_id: Annotated[
        int, typer.Argument(metavar="ID", help="The dead letter's id (from 'dead-letters list').")
    ],
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Requeue a dead letter's message for its agent, with a fresh attempt count."""
    config = settings(dsn)

    async def go() -> dict[str, Any]:
        async with open_database(config, schema=True) as db:
            row = await message_store.retry_dead_letter(db, dead_letter_id, "cli")
            if row is None:
                raise DeadLetterNotFound(dead_letter_id)
            return {"id": dead_letter_id, "message_id": str(row["id"]), "agent": row["agent"]}

    result = run_async(go, dsn=dsn)
    if as_json:
        print_json({**result, "requeued": True})
    else:
        typer.echo(
            f"dead letter {dead_letter_id} requeued: message {result['message_id']} goes to {result['agent']} again"
        )
