"""SQL of the conversations layer (reads and atomic claims that go straight to the pool)."""

from __future__ import annotations

from ._delivery import MESSAGE_COLUMNS

__all__ = ["ACTIVE_CONVERSATION", "CLAIM_UNREAD", "EXPIRE_REQUESTS", "OLDEST_OPEN_REQUEST", "REQUEST_BY_ID"]

#: Claim up to N unread messages of an agent, oldest first, marking them read in the same statement.
#: ``{sender}`` is empty or ``AND sender_id = $2``; ``{limit}`` an int. Concurrent claims skip locked rows.
CLAIM_UNREAD = (
    "WITH c AS (SELECT seq FROM messages WHERE recipient_id = $1 {sender} AND read_at IS NULL AND dead_at IS NULL "
    "ORDER BY seq LIMIT {limit} FOR UPDATE SKIP LOCKED), "
    "u AS (UPDATE messages m SET read_at = now() FROM c WHERE m.seq = c.seq AND m.read_at IS NULL RETURNING m.*) "
    f"SELECT {MESSAGE_COLUMNS} FROM u m JOIN agents s ON s.id = m.sender_id JOIN agents r ON r.id = m.recipient_id "
    "ORDER BY m.seq"
)

#: The pair's active conversation ($1 < $2).
ACTIVE_CONVERSATION = "SELECT id FROM conversations WHERE agent_a = $1 AND agent_b = $2 AND status = 'active'"

#: The oldest unanswered request from $2 to $1, skipping ids being answered in this process ($3).
OLDEST_OPEN_REQUEST = (
    "SELECT id, conversation_id FROM messages WHERE recipient_id = $1 AND sender_id = $2 AND kind = 'request' "
    "AND replied_at IS NULL AND NOT (id = ANY($3::uuid[])) ORDER BY seq LIMIT 1"
)

#: One message by id, with what ``reply(request_id=...)`` checks.
REQUEST_BY_ID = "SELECT id, kind, sender_id, recipient_id, conversation_id, replied_at FROM messages WHERE id = $1"

#: Recovery: requests whose absolute deadline passed unanswered are marked timed out.
EXPIRE_REQUESTS = (
    "UPDATE messages SET timed_out_at = now() WHERE kind = 'request' AND replied_at IS NULL "
    "AND timed_out_at IS NULL AND reply_deadline < now()"
)
