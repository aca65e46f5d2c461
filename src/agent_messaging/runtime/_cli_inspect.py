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

from ..actors import _meeting_store as store
from ..errors import AgentNotFound, DeadLetterNotFound, MeetingNotFound, OrganizationNotFound
from ..models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus
from ..persistence.database import Database, Row
from ..persistence.presence import hosts
from ..persistence.writer import NOTIFY_CHANNEL
from ._services import Codec
from .cli import DsnOption, JsonOption, _database, _fail, _print_json, _run, _settings, _table

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

_CODEC: Codec[Any] = Codec(Any, 1 << 30)
_FOLLOW_POLL = 0.5


def _iso(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else "-"


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
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
    value = await db.fetch_val(
        "SELECT id FROM agents WHERE external_id = $1 AND deregistered_at IS NULL", [external_id]
    )
    if value is None:
        raise AgentNotFound(external_id)
    return uuid.UUID(str(value))


def _limit(value: int) -> int:
    if not 1 <= value <= 10_000:
        _fail(f"--limit must be between 1 and 10000, not {value}", 2)
    return value


# --------------------------------------------------------------------------- agents


@agents_app.command("list")
def agents_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organization (external id).")] = None,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Registered agents: organization, status, who hosts them (runtime, host, pid, alive), unread messages.

    Restarts are counted inside the hosting process only, so they show as '-' here.
    """
    config = _settings(dsn)

    async def go() -> tuple[list[Row], dict[str, Row]]:
        async with _database(config) as db:
            where, params = "", []
            if org is not None:
                if await db.fetch_val("SELECT 1 FROM organizations WHERE external_id = $1", [org]) is None:
                    raise OrganizationNotFound(org)
                where, params = " AND o.external_id = $1", [org]
            rows = await db.fetch(
                "SELECT a.id, a.external_id AS agent, o.external_id AS organization, a.name, a.status, "
                "(SELECT count(*) FROM messages m WHERE m.recipient_id = a.id AND m.read_at IS NULL "
                " AND m.dead_at IS NULL) AS unread, "
                "(SELECT count(*) FROM dead_letters d WHERE d.agent_id = a.id AND d.retried_at IS NULL) AS dead "
                "FROM agents a JOIN organizations o ON o.id = a.organization_id "
                f"WHERE a.deregistered_at IS NULL{where} ORDER BY o.external_id, a.external_id",
                params,
            )
            placed = {str(h["agent_id"]): h for h in await hosts(db, [uuid.UUID(str(r["id"])) for r in rows])}
            return rows, placed

    rows, placed = _run(go, dsn=dsn)
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
                "restarts": None,
            }
        )
    if as_json:
        _print_json(records)
        return
    table = [
        [
            rec["organization"],
            rec["agent"],
            rec["status"],
            f"{rec['runtime']} on {rec['hostname']} pid {rec['pid']}" if rec["runtime"] else "-",
            "-" if rec["alive"] is None else ("yes" if rec["alive"] else "no (runtime gone)"),
            str(rec["unread"]),
            str(rec["dead_letters"]),
            "-",
        ]
        for rec in records
    ]
    title = f"Agents{f' of {org}' if org else ''} ({len(records)})"
    _table(title, ["org", "agent", "status", "hosted by", "alive", "unread", "dead", "restarts"], table)


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
    config = _settings(dsn)
    _limit(limit)

    async def go() -> list[Row]:
        async with _database(config) as db:
            params: list[Any] = [await _agent_id(db, agent)]
            where = "m.recipient_id = $1"
            if unread:
                where += " AND m.read_at IS NULL AND m.dead_at IS NULL"
            if sender is not None:
                params.append(await _agent_id(db, sender))
                where += " AND m.sender_id = $2"
            return await db.fetch(
                "SELECT m.seq, m.id, m.kind, s.external_id AS sender, r.external_id AS recipient, m.payload, "
                "m.created_at, m.read_at, m.handled_at, m.dead_at, m.attempts, m.conversation_id, m.in_reply_to "
                "FROM messages m JOIN agents s ON s.id = m.sender_id JOIN agents r ON r.id = m.recipient_id "
                f"WHERE {where} ORDER BY m.seq DESC LIMIT {int(limit)}",
                params,
            )

    rows = _run(go, dsn=dsn)

    def state(r: Row) -> str:
        if r["dead_at"] is not None:
            return "dead-lettered"
        if r["handled_at"] is not None:
            return "handled"
        return "read" if r["read_at"] is not None else "unread"

    if as_json:
        _print_json(
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
    table = [
        [str(r["seq"]), _iso(r["created_at"]), r["kind"], r["sender"], state(r), _short(_payload(r["payload"]))]
        for r in rows
    ]
    which = "unread messages" if unread else "messages"
    source = f" from {sender}" if sender else ""
    _table(
        f"{which.capitalize()} of {agent}{source} ({len(rows)}, newest first)",
        ["seq", "at", "kind", "from", "state", "payload"],
        table,
    )


# --------------------------------------------------------------------------- meetings


def _meeting_json(status: MeetingStatus) -> dict[str, Any]:
    return status.model_dump(mode="json")


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
        _fail(f"{value!r} is not a meeting id (a UUID, as 'meetings list' prints)", 2)


@meetings_app.command("list")
def meetings_list(
    active: Annotated[bool, typer.Option("--active", help="Only meetings that have not ended.")] = False,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """Meetings, newest first: state, host, floor holder, turn, participants."""
    config = _settings(dsn)

    async def go() -> list[MeetingStatus]:
        async with _database(config) as db:
            return await store.list_meetings(db, True if active else None)

    meetings = _run(go, dsn=dsn)
    if as_json:
        _print_json([_meeting_json(m) for m in meetings])
        return
    table = [
        [
            str(m.meeting_id),
            m.state.value,
            m.host,
            m.floor_holder or "-",
            str(m.turn_number),
            ", ".join(p.agent for p in m.participants if not p.is_host),
        ]
        for m in meetings
    ]
    _table(
        f"{'Active meetings' if active else 'Meetings'} ({len(meetings)})",
        ["id", "state", "host", "floor", "turn", "participants"],
        table,
    )


@meetings_app.command("show")
def meetings_show(
    meeting_id: Annotated[str, typer.Argument(metavar="ID", help="The meeting's id.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until it ends.")] = False,
    dsn: DsnOption = None,
    as_json: JsonOption = False,
) -> None:
    """A meeting's status and transcript; with --follow, new events as they happen until the meeting ends."""
    config = _settings(dsn)
    mid = _meeting_uuid(meeting_id)

    async def go() -> None:
        async with _database(config) as db:
            status = await store.fetch_status(db, mid)
            if status is None:
                raise MeetingNotFound(mid)
            events = await store.fetch_history(db, _CODEC, mid, 0, 10_000)
            if as_json and not follow:
                _print_json({"meeting": _meeting_json(status), "events": [_event_json(e) for e in events]})
                return
            if as_json:
                typer.echo(json.dumps({"meeting": _meeting_json(status)}, default=str))
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
                    typer.echo(json.dumps(_event_json(event), default=str) if as_json else _event_line(event))
                    last = event.seq
                    ended = ended or event.type is MeetingEventType.MEETING_ENDED
                if not follow or ended:
                    return
                await anyio.sleep(_FOLLOW_POLL)
                events = await store.fetch_history(db, _CODEC, mid, last, 10_000)

    _run(go, dsn=dsn)


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
    config = _settings(dsn)
    _limit(limit)

    async def go() -> list[Row]:
        async with _database(config) as db:
            clauses, params = [], []
            if agent is not None:
                params.append(await _agent_id(db, agent))
                clauses.append("d.agent_id = $1")
            if not include_retried:
                clauses.append("d.retried_at IS NULL")
            where = " AND ".join(clauses) or "TRUE"
            return await db.fetch(
                "SELECT d.id, d.message_id, a.external_id AS agent, s.external_id AS sender, d.attempts, d.error, "
                "d.created_at, d.retried_at, m.payload FROM dead_letters d JOIN agents a ON a.id = d.agent_id "
                "JOIN messages m ON m.id = d.message_id JOIN agents s ON s.id = m.sender_id "
                f"WHERE {where} ORDER BY d.id LIMIT {int(limit)}",
                params,
            )

    rows = _run(go, dsn=dsn)
    if as_json:
        _print_json(
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
    table = [
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
    _table(
        f"Dead letters{f' of {agent}' if agent else ''} ({len(rows)})",
        ["id", "agent", "from", "attempts", "error", "at", "retried"],
        table,
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
    config = _settings(dsn)

    async def go() -> Row:
        async with _database(config) as db:

            async def retry(tx: Any) -> Row | None:
                result = await tx.execute(
                    "WITH d AS (UPDATE dead_letters SET retried_at = now() WHERE id = $1 AND retried_at IS NULL "
                    "RETURNING message_id) "
                    "UPDATE messages m SET dead_at = NULL, attempts = 0 FROM d WHERE m.id = d.message_id "
                    "RETURNING m.id, m.recipient_id",
                    [dead_letter_id],
                )
                rows = result.result()
                if rows:
                    await tx.execute("SELECT pg_notify($1, $2)", [NOTIFY_CHANNEL, f"cli|{rows[0]['recipient_id']}"])
                return rows[0] if rows else None

            row = await db.transaction(retry)
            if row is None:
                raise DeadLetterNotFound(dead_letter_id)
            name = await db.fetch_val(
                "SELECT external_id FROM agents WHERE id = $1", [uuid.UUID(str(row["recipient_id"]))]
            )
            return {"id": dead_letter_id, "message_id": str(row["id"]), "agent": name}

    result = _run(go, dsn=dsn)
    if as_json:
        _print_json({**result, "requeued": True})
    else:
        typer.echo(
            f"dead letter {dead_letter_id} requeued: message {result['message_id']} goes to {result['agent']} again"
        )
