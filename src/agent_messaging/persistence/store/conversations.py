"""Conversations: sessions between two agents, calls (requests) and their replies.

A conversation message's session is resolved by the database in the statement
that writes it (:data:`MESSAGE`), so two processes opening a pair at once
agree on one session.
"""

from __future__ import annotations

import re
import uuid

from .._rows import as_uuid
from ..database import Database, Row
from ..writer import Statement, insert_statement

__all__ = [
    "CLAIM",
    "CLOSE_REQUESTS",
    "END",
    "MESSAGE",
    "OPEN",
    "REPLY",
    "TIMED_OUT",
    "UNREAD",
    "active_conversation",
    "ended_conversation",
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
    updates="conversations",
)
#: Whether the conversation of a message (alias ``{request}``) has ended.
_ENDED = "EXISTS (SELECT 1 FROM conversations c WHERE c.id = {request}.conversation_id AND c.status = 'ended')"
_UNNEST_MESSAGE = (
    "unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::text[], "
    "$9::text[], $10::timestamptz[], $11::bool[]) AS u(id, organization_id, kind, sender_id, recipient_id, "
    "conversation_id, in_reply_to, payload, metadata, reply_deadline, consumed)"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (id, organization_id, kind, sender_id, recipient_id, conversation_id, in_reply_to, "
    "payload, metadata, reply_deadline, read_at) "
)

#: A request or chat line: the columns of ``messages.INSERT`` plus ``consumed`` (insert it already read). Its
#: session is the pair's active one, else the row's own: the candidate opened by an :data:`OPEN` row of the
#: same unit, or the session its runtime knows. If that one has ended (another runtime ended it), the
#: statement raises (:func:`ended_conversation` reads the error) rather than write into an ended session.
MESSAGE = Statement(
    "conversation.message",
    21,
    _INSERT_MESSAGE + "SELECT u.id, u.organization_id, u.kind, u.sender_id, u.recipient_id, "
    "coalesce((SELECT c.id FROM conversations c WHERE c.agent_a = least(u.sender_id, u.recipient_id) "
    "AND c.agent_b = greatest(u.sender_id, u.recipient_id) AND c.status = 'active'), "
    f"CASE WHEN {_ENDED.format(request='u')} "
    "THEN agent_messaging_conversation_ended(u.conversation_id) ELSE u.conversation_id END), "
    "u.in_reply_to, u.payload::jsonb, u.metadata::jsonb, u.reply_deadline, CASE WHEN u.consumed THEN now() END "
    f"FROM {_UNNEST_MESSAGE} ON CONFLICT (id) DO NOTHING",
)
#: Claim a request for a reply: (reply_id, request_id). It wins only if the request is neither answered by
#: another reply nor in an ended conversation (closed with it, or committed at the instant it ended, after
#: the end's closing had looked); the row lock serializes concurrent claims, so across any number of
#: processes one reply wins. Returns the winning reply ids (a retried batch wins again: replied_by).
CLAIM = Statement(
    "conversation.claim",
    22,
    "UPDATE messages q SET replied_at = coalesce(q.replied_at, now()), replied_by = u.reply_id "
    "FROM unnest($1::uuid[], $2::uuid[]) AS u(reply_id, request_id) "
    "WHERE q.id = u.request_id AND q.kind = 'request' AND q.closed_at IS NULL "
    "AND (q.replied_at IS NULL OR q.replied_by = u.reply_id) "
    f"AND NOT {_ENDED.format(request='q')} RETURNING u.reply_id AS key",
    returning=True,
    updates="messages",
    key=1,
)
#: A reply (the columns of :data:`MESSAGE`), written only if its :data:`CLAIM` row of the same unit won; its
#: session is the request's.
REPLY = Statement(
    "conversation.reply",
    23,
    _INSERT_MESSAGE + "SELECT u.id, u.organization_id, u.kind, u.sender_id, u.recipient_id, "
    "coalesce((SELECT q.conversation_id FROM messages q WHERE q.id = u.in_reply_to), u.conversation_id), "
    "u.in_reply_to, u.payload::jsonb, u.metadata::jsonb, u.reply_deadline, CASE WHEN u.consumed THEN now() END "
    f"FROM {_UNNEST_MESSAGE} JOIN {{requires}} c ON c.key = u.id ON CONFLICT (id) DO NOTHING",
    requires=CLAIM,
)
#: Put a consumed reply back among its recipient's unread messages: (id,).
UNREAD = Statement(
    "conversation.unread",
    37,
    "UPDATE messages m SET read_at = NULL FROM unnest($1::uuid[]) AS u(id) WHERE m.id = u.id",
    updates="messages",
)
#: Close the open requests of ended conversations: (conversation_id,). No reply can land on them.
CLOSE_REQUESTS = Statement(
    "conversation.close_requests",
    12,
    "UPDATE messages m SET closed_at = now() FROM unnest($1::uuid[]) AS u(id) WHERE m.conversation_id = u.id "
    "AND m.kind = 'request' AND m.replied_at IS NULL AND m.closed_at IS NULL",
    updates="messages",
    key=None,
)
#: A request's caller stopped waiting unanswered: (id,).
TIMED_OUT = Statement(
    "message.timed_out",
    34,
    "UPDATE messages m SET timed_out_at = coalesce(m.timed_out_at, now()) FROM unnest($1::uuid[]) AS u(id) "
    "WHERE m.id = u.id AND m.replied_at IS NULL",
    updates="messages",
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
    """The oldest open request from ``waiting_id`` to ``responder_id`` (id, conversation_id), but ``skip``.

    Open: neither answered nor closed, and its conversation has not ended (it is the pair's active one).
    """
    return await db.fetch_row(
        "SELECT id, conversation_id FROM messages m WHERE recipient_id = $1 AND sender_id = $2 "
        "AND kind = 'request' AND replied_at IS NULL AND closed_at IS NULL AND NOT (id = ANY($3::uuid[])) "
        f"AND NOT {_ENDED.format(request='m')} ORDER BY seq LIMIT 1",
        [responder_id, waiting_id, skip],
    )


async def request(db: Database, message_id: uuid.UUID) -> Row | None:
    """One message by id, with what ``reply(request_id=...)`` checks (``ended``: its conversation ended)."""
    return await db.fetch_row(
        "SELECT id, kind, sender_id, recipient_id, conversation_id, replied_at, "
        f"{_ENDED.format(request='m')} AS ended FROM messages m WHERE id = $1",
        [message_id],
    )


_ENDED_ERROR = re.compile(r"agent_messaging: conversation ([0-9a-f-]{36}) has ended")


def ended_conversation(exc: BaseException) -> uuid.UUID | None:
    """The conversation a :data:`MESSAGE` was refused for because it has ended, or None."""
    found = _ENDED_ERROR.search(str(exc))
    return uuid.UUID(found.group(1)) if found else None


# The read mark of a reply its caller consumes is bookkeeping (lost, the reply only shows up again among the
# caller's unread messages: at-least-once), so this statement commits without waiting for the disk.
_REPLIES_AND_ENDS = """
WITH quick AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),
r AS (
    UPDATE messages m SET read_at = coalesce(m.read_at, now())
     WHERE m.in_reply_to = ANY($1::uuid[]) AND m.kind = 'reply'
    RETURNING m.in_reply_to, m.id, m.payload::text AS payload, m.metadata::text AS metadata)
SELECT r.in_reply_to AS request_id, r.id AS message_id, r.payload, r.metadata, 'reply' AS what FROM r CROSS JOIN quick
UNION ALL
SELECT q.id, c.id, (SELECT e.payload::text FROM messages e WHERE e.conversation_id = c.id AND e.kind = 'end'
                    ORDER BY e.seq DESC LIMIT 1), NULL, 'end'
  FROM messages q JOIN conversations c ON c.id = q.conversation_id
 WHERE q.id = ANY($1::uuid[]) AND q.replied_at IS NULL AND c.status = 'ended'
"""


async def replies_and_ends(db: Database, request_ids: list[uuid.UUID]) -> list[Row]:
    """For pending requests: their replies ('reply': id, payload, metadata), marked read in the same statement
    (the caller consumes them), and the ends of their conversations ('end': the conversation id and the
    ending message's payload)."""
    return await db.fetch(_REPLIES_AND_ENDS, [request_ids])


async def expire_requests(db: Database) -> int:
    """Mark requests whose absolute deadline passed unanswered as timed out; returns how many."""
    value = await db.fetch_val(
        "WITH e AS (UPDATE messages SET timed_out_at = now() WHERE kind = 'request' AND replied_at IS NULL "
        "AND timed_out_at IS NULL AND reply_deadline < now() RETURNING 1) SELECT count(*) FROM e"
    )
    return int(value or 0)
