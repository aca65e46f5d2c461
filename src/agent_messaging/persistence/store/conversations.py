"""Conversations: sessions between two agents, calls (requests) and their replies.

A conversation message's session is resolved by the database in the statement
that writes it (:data:`MESSAGE`), so two processes opening a pair at once
agree on one session.
"""

from __future__ import annotations

import uuid

from .._rows import as_uuid
from ..database import Database, Row
from ..writer import Statement, insert_statement

__all__ = [
    "END",
    "MESSAGE",
    "OPEN",
    "REPLIED",
    "TIMED_OUT",
    "UNREAD",
    "active_conversation",
    "expire_requests",
    "oldest_open_request",
    "replies_and_ends",
    "request",
]

# ---------------------------------------------------------------------------------------- batched writes

#: A candidate session for a pair: (id, organization_id, agent_a, agent_b) with agent_a < agent_b.
OPEN = insert_statement(
    "conversation.open", 10, "conversations", "id, organization_id, agent_a, agent_b", "uuid, uuid, uuid, uuid"
)
#: End a session: (id, ended_by).
END = Statement(
    "conversation.end",
    11,
    "UPDATE conversations c SET status = 'ended', ended_at = now(), ended_by = u.ended_by "
    "FROM unnest($1::uuid[], $2::uuid[]) AS u(id, ended_by) WHERE c.id = u.id AND c.status = 'active'",
)
#: A conversation message: the columns of ``messages.INSERT`` plus ``consumed`` (insert it already read).
#: Its session is the request's (replies), else the pair's active one, else the candidate opened by an
#: :data:`OPEN` row of the same unit; a reply to an already answered request is dropped (the first reply wins).
MESSAGE = Statement(
    "conversation.message",
    21,
    "INSERT INTO messages (id, organization_id, kind, sender_id, recipient_id, conversation_id, in_reply_to, "
    "payload, metadata, reply_deadline, read_at) "
    "SELECT u.id, u.organization_id, u.kind, u.sender_id, u.recipient_id, "
    "coalesce((SELECT q.conversation_id FROM messages q WHERE q.id = u.in_reply_to), "
    "(SELECT c.id FROM conversations c WHERE c.agent_a = least(u.sender_id, u.recipient_id) "
    "AND c.agent_b = greatest(u.sender_id, u.recipient_id) AND c.status = 'active'), u.conversation_id), "
    "u.in_reply_to, u.payload::jsonb, u.metadata::jsonb, u.reply_deadline, CASE WHEN u.consumed THEN now() END "
    "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], "
    "$9::text[], $10::timestamptz[], $11::bool[]) AS u(id, organization_id, kind, sender_id, recipient_id, "
    "conversation_id, in_reply_to, payload, metadata, reply_deadline, consumed) "
    "WHERE u.in_reply_to IS NULL OR NOT EXISTS "
    "(SELECT 1 FROM messages q WHERE q.id = u.in_reply_to AND q.replied_at IS NOT NULL) "
    "ON CONFLICT (id) DO NOTHING",
)
#: Put a consumed reply back among its recipient's unread messages: (id,).
UNREAD = Statement(
    "conversation.unread", 37, "UPDATE messages m SET read_at = NULL FROM unnest($1::uuid[]) AS u(id) WHERE m.id = u.id"
)
#: A request got its reply: (id,).
REPLIED = Statement(
    "message.replied",
    33,
    "UPDATE messages m SET replied_at = coalesce(m.replied_at, now()) FROM unnest($1::uuid[]) AS u(id) "
    "WHERE m.id = u.id",
)
#: A request's caller stopped waiting unanswered: (id,).
TIMED_OUT = Statement(
    "message.timed_out",
    34,
    "UPDATE messages m SET timed_out_at = coalesce(m.timed_out_at, now()) FROM unnest($1::uuid[]) AS u(id) "
    "WHERE m.id = u.id AND m.replied_at IS NULL",
)

# ---------------------------------------------------------------------------------------- reads


async def active_conversation(db: Database, pair: tuple[uuid.UUID, uuid.UUID]) -> uuid.UUID | None:
    """The active session of a pair (ordered: ``pair[0] < pair[1]``), if any."""
    value = await db.fetch_val(
        "SELECT id FROM conversations WHERE agent_a = $1 AND agent_b = $2 AND status = 'active'", list(pair)
    )
    return None if value is None else as_uuid(value)


async def oldest_open_request(
    db: Database, responder_id: uuid.UUID, waiting_id: uuid.UUID, skip: list[uuid.UUID]
) -> Row | None:
    """The oldest unanswered request from ``waiting_id`` to ``responder_id`` (id, conversation_id), but ``skip``."""
    return await db.fetch_row(
        "SELECT id, conversation_id FROM messages WHERE recipient_id = $1 AND sender_id = $2 AND kind = 'request' "
        "AND replied_at IS NULL AND NOT (id = ANY($3::uuid[])) ORDER BY seq LIMIT 1",
        [responder_id, waiting_id, skip],
    )


async def request(db: Database, message_id: uuid.UUID) -> Row | None:
    """One message by id, with what ``reply(request_id=...)`` checks."""
    return await db.fetch_row(
        "SELECT id, kind, sender_id, recipient_id, conversation_id, replied_at FROM messages WHERE id = $1",
        [message_id],
    )


_REPLIES_AND_ENDS = """
SELECT m.in_reply_to AS request_id, m.id AS message_id, m.payload::text AS payload, m.read_at IS NULL AS unread,
       'reply' AS what
  FROM messages m WHERE m.in_reply_to = ANY($1::uuid[]) AND m.kind = 'reply'
UNION ALL
SELECT q.id, c.id, (SELECT e.payload::text FROM messages e WHERE e.conversation_id = c.id AND e.kind = 'end'
                    ORDER BY e.seq DESC LIMIT 1), false, 'end'
  FROM messages q JOIN conversations c ON c.id = q.conversation_id
 WHERE q.id = ANY($1::uuid[]) AND c.status = 'ended' AND c.ended_at > q.created_at
"""


async def replies_and_ends(db: Database, request_ids: list[uuid.UUID]) -> list[Row]:
    """For pending requests: their replies ('reply': the reply's id and payload, unread or not) and the ends of
    their conversations ('end': the conversation id and the ending message's payload)."""
    return await db.fetch(_REPLIES_AND_ENDS, [request_ids])


async def expire_requests(db: Database) -> int:
    """Mark requests whose absolute deadline passed unanswered as timed out; returns how many."""
    value = await db.fetch_val(
        "WITH e AS (UPDATE messages SET timed_out_at = now() WHERE kind = 'request' AND replied_at IS NULL "
        "AND timed_out_at IS NULL AND reply_deadline < now() RETURNING 1) SELECT count(*) FROM e"
    )
    return int(value or 0)
