"""Messages: their batched writes, the unread queue, paging, dead letters.

Reads return rows selected with :data:`MESSAGE_COLUMNS` (the domain decodes
payloads into the runtime's message type). Claims of the unread queue are one
``UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
each, so two readers of one agent never get the same message.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from .._rows import as_uuid
from ..database import Database, Row
from ..writer import NOTIFY_CHANNEL, Statement, insert_statement

__all__ = [
    "ATTEMPT",
    "DEAD",
    "DEAD_LETTER",
    "HANDLED",
    "INSERT",
    "MESSAGE_COLUMNS",
    "READ",
    "UNDECODABLE",
    "backlog",
    "claim_unread",
    "dead_letters",
    "deregistered_recipient",
    "kinds_since",
    "organization_totals",
    "page",
    "retry_dead_letter",
    "unread_after",
    "with_unread",
]

#: Columns selected for a message (the agents joined twice for the external ids; jsonb as text, see ``_rows``).
MESSAGE_COLUMNS = """m.seq, m.id, m.kind, m.sender_id, m.recipient_id, s.external_id AS sender,
    r.external_id AS recipient, m.conversation_id, m.in_reply_to, m.payload::text AS payload,
    m.metadata::text AS metadata, m.created_at,
    m.read_at, m.handled_at, m.dead_at, m.attempts, m.reply_deadline, m.organization_id"""
_FROM = "messages m JOIN agents s ON s.id = m.sender_id JOIN agents r ON r.id = m.recipient_id"

# ---------------------------------------------------------------------------------------- batched writes

#: The database refused a message because its recipient is deregistered (the check of migration 0005), or
#: gone altogether (the foreign key: its row was deleted behind the runtime's back).
_DEREGISTERED = re.compile(
    r"agent_messaging: recipient ([0-9a-f-]{36}) is deregistered"
    r"|Key \(recipient_id\)=\(([0-9a-f-]{36})\) is not present in table \"agents\""
)


def deregistered_recipient(exc: BaseException) -> uuid.UUID | None:
    """The recipient a write was refused for because it is no live agent (see ``_DEREGISTERED``), or None."""
    found = _DEREGISTERED.search(str(exc))
    return uuid.UUID(found.group(1) or found.group(2)) if found else None


#: A new message: (id, organization_id, kind, sender_id, recipient_id, conversation_id, in_reply_to, payload
#: JSON, metadata JSON, reply_deadline).
INSERT = insert_statement(
    "message.insert",
    20,
    "messages",
    "id, organization_id, kind, sender_id, recipient_id, conversation_id, in_reply_to, payload, metadata, "
    "reply_deadline",
    "uuid, uuid, text, uuid, uuid, uuid, uuid, text, text, timestamptz",
    "(id) DO NOTHING",
)
#: Mark read: (id,).
READ = Statement(
    "message.read",
    30,
    "UPDATE messages m SET read_at = coalesce(m.read_at, now()) FROM unnest($1::uuid[]) AS u(id) WHERE m.id = u.id",
    updates="messages",
)
#: (id, attempts) rows of a batch, one per message (the highest count): an UPDATE joined to two rows for one
#: target row takes either, so a batch holding two marks of one message could keep the lower count.
_BY_MESSAGE = (
    "(SELECT id, max(attempts) AS attempts FROM unnest($1::uuid[], $2::int[]) AS v(id, attempts) GROUP BY id) u"
)

#: A handler returned for it: (id, attempts).
HANDLED = Statement(
    "message.handled",
    31,
    "UPDATE messages m SET handled_at = coalesce(m.handled_at, now()), read_at = coalesce(m.read_at, now()), "
    "attempts = greatest(m.attempts, u.attempts) "
    f"FROM {_BY_MESSAGE} WHERE m.id = u.id",
    updates="messages",
)
#: A handler raised for it: (id, attempts).
ATTEMPT = Statement(
    "message.attempt",
    32,
    f"UPDATE messages m SET attempts = greatest(m.attempts, u.attempts) FROM {_BY_MESSAGE} WHERE m.id = u.id",
    updates="messages",
)
#: Dead-lettered after its last attempt: (id, attempts).
DEAD = Statement(
    "message.dead",
    35,
    "UPDATE messages m SET dead_at = coalesce(m.dead_at, now()), attempts = greatest(m.attempts, u.attempts) "
    "FROM unnest($1::uuid[], $2::int[]) AS u(id, attempts) WHERE m.id = u.id",
    updates="messages",
)
#: A stored message the runtime cannot decode (written by another client or an older version): dead-lettered
#: and left unread, so that retrying its dead letter (after a fix) delivers it again: (id,).
UNDECODABLE = Statement(
    "message.undecodable",
    38,
    "UPDATE messages m SET dead_at = coalesce(m.dead_at, now()), read_at = NULL "
    "FROM unnest($1::uuid[]) AS u(id) WHERE m.id = u.id",
    updates="messages",
)
#: The dead letter of a message, once while not retried (a unique index, migration 0006):
#: (message_id, agent_id, attempts, error).
DEAD_LETTER = Statement(
    "dead_letter.insert",
    36,
    "INSERT INTO dead_letters (message_id, agent_id, attempts, error) "
    "SELECT u.message_id, u.agent_id, u.attempts, u.error "
    "FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[]) AS u(message_id, agent_id, attempts, error) "
    "ON CONFLICT (message_id) WHERE retried_at IS NULL DO NOTHING",
)

# ---------------------------------------------------------------------------------------- reads

_UNREAD = "m.read_at IS NULL AND m.dead_at IS NULL"


async def unread_after(db: Database, recipient_id: uuid.UUID, after_seq: int, limit: int) -> list[Row]:
    """Unread, not dead-lettered messages of an agent with ``seq > after_seq``, oldest first (not claimed)."""
    return await db.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM {_FROM} WHERE m.recipient_id = $1 AND {_UNREAD} AND m.seq > $2 "
        "ORDER BY m.seq LIMIT $3",
        [recipient_id, after_seq, limit],
    )


async def with_unread(db: Database, agent_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``agent_ids`` that have unread messages (one query)."""
    rows = await db.fetch(
        "SELECT DISTINCT recipient_id FROM messages m WHERE recipient_id = ANY($1::uuid[]) AND " + _UNREAD,
        [list(agent_ids)],
    )
    return {as_uuid(row["recipient_id"]) for row in rows}


_CLAIM = (
    "WITH c AS (SELECT seq FROM messages WHERE recipient_id = $1 {sender} AND read_at IS NULL AND dead_at IS NULL "
    "ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED), "
    "u AS (UPDATE messages m SET read_at = now() FROM c WHERE m.seq = c.seq AND m.read_at IS NULL RETURNING m.*) "
    f"SELECT {MESSAGE_COLUMNS} FROM u m JOIN agents s ON s.id = m.sender_id JOIN agents r ON r.id = m.recipient_id "
    "ORDER BY m.seq"
)
_CLAIM_ANY = _CLAIM.format(sender="")
_CLAIM_FROM = _CLAIM.format(sender="AND sender_id = $3")


async def claim_unread(db: Database, recipient_id: uuid.UUID, sender_id: uuid.UUID | None, limit: int) -> list[Row]:
    """Claim up to ``limit`` unread messages of an agent (from one sender if given), oldest first, marking them read."""
    if sender_id is None:
        return await db.fetch(_CLAIM_ANY, [recipient_id, limit])
    return await db.fetch(_CLAIM_FROM, [recipient_id, limit, sender_id])


async def page(
    db: Database,
    *,
    recipient_id: uuid.UUID | None = None,
    sender_id: uuid.UUID | None = None,
    between: tuple[uuid.UUID, uuid.UUID] | None = None,
    pair: tuple[uuid.UUID, uuid.UUID] | None = None,
    unread_only: bool = False,
    live_only: bool = False,
    limit: int,
    cursor: int | None,
    cursor_id: uuid.UUID | None = None,
    newest_first: bool,
) -> list[Row]:
    """One page of messages: newest first before ``cursor`` (a seq), or oldest first after it.

    ``recipient_id`` / ``sender_id`` filter on either end; ``between`` selects the conversation messages of a
    pair (both directions, every session); ``pair`` every message of a pair (both directions, every kind, notes
    included); ``unread_only`` keeps unread ones (``live_only``: and not dead-lettered). ``cursor_id`` is a
    cursor given as a message's id (its seq is looked up in the statement; an unknown id selects nothing).
    """
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if recipient_id is not None:
        clauses.append(f"m.recipient_id = {param(recipient_id)}")
    if sender_id is not None:
        clauses.append(f"m.sender_id = {param(sender_id)}")
    if between is not None:
        a, b = param(between[0]), param(between[1])
        clauses.append(
            f"m.conversation_id IS NOT NULL AND ((m.sender_id = {a} AND m.recipient_id = {b}) "
            f"OR (m.sender_id = {b} AND m.recipient_id = {a}))"
        )
    if pair is not None:
        a, b = param(pair[0]), param(pair[1])
        clauses.append(
            f"((m.sender_id = {a} AND m.recipient_id = {b}) OR (m.sender_id = {b} AND m.recipient_id = {a}))"
        )
    if unread_only:
        clauses.append(_UNREAD if live_only else "m.read_at IS NULL")
    direction = "<" if newest_first else ">"
    if cursor is not None:
        clauses.append(f"m.seq {direction} {param(cursor)}")
    if cursor_id is not None:
        clauses.append(f"m.seq {direction} (SELECT c.seq FROM messages c WHERE c.id = {param(cursor_id)})")
    where = " AND ".join(clauses) or "TRUE"
    order = "m.seq DESC" if newest_first else "m.seq"
    return await db.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM {_FROM} WHERE {where} ORDER BY {order} LIMIT {param(limit)}", params
    )


# ---------------------------------------------------------------------------------------- dead letters


async def dead_letters(db: Database, agent_id: uuid.UUID | None, *, include_retried: bool, limit: int) -> list[Row]:
    """Dead letters (of one agent if given), oldest first, with the message's sender and payload."""
    clauses: list[str] = []
    params: list[Any] = []
    if agent_id is not None:
        params.append(agent_id)
        clauses.append("d.agent_id = $1")
    if not include_retried:
        clauses.append("d.retried_at IS NULL")
    params.append(limit)
    where = " AND ".join(clauses) or "TRUE"
    return await db.fetch(
        "SELECT d.id, d.message_id, a.external_id AS agent, s.external_id AS sender, d.attempts, d.error, "
        "d.created_at, d.retried_at, m.payload::text AS payload FROM dead_letters d JOIN agents a ON a.id = d.agent_id "
        "JOIN messages m ON m.id = d.message_id JOIN agents s ON s.id = m.sender_id "
        f"WHERE {where} ORDER BY d.id LIMIT ${len(params)}",
        params,
    )


_RETRY = (
    "WITH d AS (UPDATE dead_letters SET retried_at = now() WHERE id = $1 AND retried_at IS NULL "
    "RETURNING message_id), "
    "m AS (UPDATE messages m SET dead_at = NULL, read_at = NULL, handled_at = NULL, attempts = 0 "
    "FROM d WHERE m.id = d.message_id "
    "RETURNING m.id, m.recipient_id), "
    "n AS (SELECT pg_notify($2, $3 || '|' || m.recipient_id::text) FROM m) "
    "SELECT m.id, m.recipient_id, a.external_id AS agent, (SELECT count(*) FROM n) AS notified "
    "FROM m JOIN agents a ON a.id = m.recipient_id"
)


async def retry_dead_letter(db: Database, dead_letter_id: int, origin: str) -> Row | None:
    """Requeue a dead letter's message with a fresh attempt count and NOTIFY its recipient's host, in one statement.

    Returns the message id, recipient id and recipient external id, or None if there is no such dead letter not
    yet retried. ``origin`` is the NOTIFY's origin (a runtime's id: its own listener ignores it).
    """
    return await db.fetch_row(_RETRY, [dead_letter_id, NOTIFY_CHANNEL, origin])


# ---------------------------------------------------------------------------------------- operator summaries


async def backlog(db: Database, agents: Sequence[str], since: Any) -> tuple[int, int]:
    """Of the live ``agents`` (external ids): messages that were unread when a runtime opened at ``since``
    (not counting requests), and requests among them (calls whose caller may be gone)."""
    row = await db.fetch_row(
        "SELECT count(*) FILTER (WHERE m.kind <> 'request') AS unread, count(*) FILTER (WHERE m.kind = 'request') "
        "AS calls FROM messages m JOIN agents a ON a.id = m.recipient_id "
        "WHERE a.external_id = ANY($1::text[]) AND a.deregistered_at IS NULL AND m.dead_at IS NULL "
        "AND m.created_at < $2 AND (m.read_at IS NULL OR m.read_at >= $2)",
        [list(agents), since],
    )
    return (int(row["unread"]), int(row["calls"])) if row else (0, 0)


async def organization_totals(db: Database, organization: str) -> tuple[int, int, int]:
    """(messages, meetings, last message seq) of an organization (zeros if it has none)."""
    row = await db.fetch_row(
        "SELECT count(*) AS messages, coalesce(max(m.seq), 0) AS last_seq, "
        "       (SELECT count(*) FROM meetings g WHERE g.organization_id = o.id) AS meetings "
        "FROM organizations o LEFT JOIN messages m ON m.organization_id = o.id "
        "WHERE o.external_id = $1 GROUP BY o.id",
        [organization],
    )
    return (int(row["messages"]), int(row["meetings"]), int(row["last_seq"])) if row else (0, 0, 0)


async def kinds_since(db: Database, organization: str, seq: int) -> dict[str, int]:
    """An organization's messages written after ``seq``, counted by kind."""
    rows = await db.fetch(
        "SELECT m.kind, count(*) AS n FROM messages m JOIN organizations o ON o.id = m.organization_id "
        "WHERE o.external_id = $1 AND m.seq > $2 GROUP BY m.kind",
        [organization, seq],
    )
    return {str(r["kind"]): int(r["n"]) for r in rows}
