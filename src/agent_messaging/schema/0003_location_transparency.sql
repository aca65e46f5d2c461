-- Every operation from every process: replies claimed in the database, requests closed with their
-- conversation, the wait-for graph of calls made inside handlers, meeting commands from other
-- runtimes, and who takes an agent's meeting turns.

-- A request is answered by the one reply that claimed it (replied_by), or closed when its
-- conversation ended (its waiters got ConversationEnded); either way no reply can land on it.
ALTER TABLE messages ADD COLUMN replied_by uuid;
ALTER TABLE messages ADD COLUMN closed_at timestamptz;
DROP INDEX messages_open_requests;
CREATE INDEX messages_open_requests ON messages (recipient_id, sender_id, seq)
    WHERE kind = 'request' AND replied_at IS NULL AND closed_at IS NULL;
CREATE INDEX messages_requests_of_conversation ON messages (conversation_id)
    WHERE kind = 'request' AND replied_at IS NULL AND closed_at IS NULL;

-- The wait-for graph: a handler of caller_id is blocked in a call to target_id. Rows of a runtime
-- that died (its presence lock gone) are ignored; a row is removed when its call ends.
CREATE TABLE call_waits (
    request_id      uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    caller_id       uuid NOT NULL REFERENCES agents (id),
    target_id       uuid NOT NULL REFERENCES agents (id),
    runtime_key     bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_waits_caller ON call_waits (caller_id);

-- Whether the runtime that hosts an agent also takes its meeting turns (an on_turn handler).
ALTER TABLE agent_hosts ADD COLUMN takes_turns boolean NOT NULL DEFAULT false;

-- Commands to a meeting from runtimes other than the one that runs it. The runner applies each
-- once (applied_at commits with the transition it causes), then writes the result (a Turn as
-- JSON, or an error) when it is ready; the caller's runtime is told with a NOTIFY.
CREATE TABLE meeting_commands (
    id           uuid PRIMARY KEY,
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    meeting_id   uuid NOT NULL REFERENCES meetings (id),
    op           text NOT NULL CHECK (op IN ('attend', 'start', 'speak', 'pass', 'leave', 'end')),
    agent_id     uuid NOT NULL REFERENCES agents (id),
    payload      jsonb,
    next_speaker text,
    origin       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz,
    done_at      timestamptz,
    result       jsonb,
    error        jsonb
);
CREATE INDEX meeting_commands_pending ON meeting_commands (meeting_id, seq) WHERE done_at IS NULL;
