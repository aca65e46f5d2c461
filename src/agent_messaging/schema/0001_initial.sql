-- agent-messaging: the whole schema of the design (PostgreSQL 14+).
-- Every table carries organization_id so it can be distributed by organization later.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    external_id text NOT NULL UNIQUE,
    name        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agents (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id),
    external_id     text NOT NULL,
    name            text NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failed', 'deregistered')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    deregistered_at timestamptz
);
-- one live agent per external id; a deregistered id may be registered again
CREATE UNIQUE INDEX agents_live_external_id ON agents (external_id) WHERE deregistered_at IS NULL;
CREATE INDEX agents_organization ON agents (organization_id);

-- A conversation session between two agents (agent_a < agent_b); at most one active per pair.
CREATE TABLE conversations (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    agent_a         uuid NOT NULL REFERENCES agents (id),
    agent_b         uuid NOT NULL REFERENCES agents (id),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'ended')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    ended_by        uuid,
    CHECK (agent_a < agent_b)
);
CREATE UNIQUE INDEX conversations_active_pair ON conversations (agent_a, agent_b) WHERE status = 'active';

-- Every message: one-way notes, chat lines, call requests and replies, conversation ends.
CREATE TABLE messages (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid NOT NULL UNIQUE,
    organization_id uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('one_way', 'chat', 'request', 'reply', 'end')),
    sender_id       uuid NOT NULL REFERENCES agents (id),
    recipient_id    uuid NOT NULL REFERENCES agents (id),
    conversation_id uuid REFERENCES conversations (id),
    in_reply_to     uuid,
    payload         jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,           -- claimed by a reader, or handled
    handled_at      timestamptz,           -- a handler returned for it
    dead_at         timestamptz,           -- dead-lettered after max_attempts
    attempts        integer NOT NULL DEFAULT 0,
    reply_deadline  timestamptz,           -- requests: absolute reply deadline
    replied_at      timestamptz,           -- requests: when a reply was recorded
    timed_out_at    timestamptz            -- requests: when the wait expired unanswered
);
-- the unread queue of an agent, in order (also serves delivery to hosted agents)
CREATE INDEX messages_unread ON messages (recipient_id, seq) WHERE read_at IS NULL AND dead_at IS NULL;
CREATE INDEX messages_recipient ON messages (recipient_id, seq);
CREATE INDEX messages_sender ON messages (sender_id, seq);
CREATE INDEX messages_conversation ON messages (conversation_id, seq) WHERE conversation_id IS NOT NULL;
-- replies by the request they answer (send_and_wait callers look them up)
CREATE INDEX messages_in_reply_to ON messages (in_reply_to) WHERE in_reply_to IS NOT NULL;
-- unanswered requests, oldest first, per (recipient, sender)
CREATE INDEX messages_open_requests ON messages (recipient_id, sender_id, seq)
    WHERE kind = 'request' AND replied_at IS NULL;

-- Which runtime hosts which agent. A runtime is alive exactly while it holds the
-- session-level advisory lock runtime_key on its presence connection, so a row
-- whose runtime died (its connection closed) can be taken over by another runtime.
CREATE TABLE agent_hosts (
    agent_id    uuid PRIMARY KEY REFERENCES agents (id),
    runtime_key bigint NOT NULL,
    runtime_id  text NOT NULL,
    hostname    text NOT NULL,
    pid         integer NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_hosts_runtime ON agent_hosts (runtime_key);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid NOT NULL REFERENCES messages (id),
    agent_id    uuid NOT NULL REFERENCES agents (id),
    attempts    integer NOT NULL,
    error       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retried_at  timestamptz
);
CREATE INDEX dead_letters_agent ON dead_letters (agent_id, id);

CREATE TABLE meetings (
    id                uuid PRIMARY KEY,
    organization_id   uuid NOT NULL,
    host_id           uuid NOT NULL REFERENCES agents (id),
    status            text NOT NULL DEFAULT 'created' CHECK (status IN ('created', 'active', 'ended')),
    turn_duration     double precision,          -- seconds; NULL = no turn limit
    speaker_selection text NOT NULL DEFAULT 'round_robin',
    floor_holder      uuid REFERENCES agents (id),
    turn_number       integer NOT NULL DEFAULT 0,
    turn_deadline     timestamptz,               -- absolute, so a restart resumes the remaining time
    last_seq          bigint NOT NULL DEFAULT 0, -- last history seq written
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    ended_at          timestamptz
);
CREATE INDEX meetings_active ON meetings (organization_id) WHERE status <> 'ended';

-- Which runtime runs which active meeting's actor (liveness as for agent_hosts).
CREATE TABLE meeting_hosts (
    meeting_id  uuid PRIMARY KEY REFERENCES meetings (id),
    runtime_key bigint NOT NULL,
    runtime_id  text NOT NULL,
    hostname    text NOT NULL,
    pid         integer NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX meeting_hosts_runtime ON meeting_hosts (runtime_key);

CREATE TABLE meeting_participants (
    meeting_id    uuid NOT NULL REFERENCES meetings (id),
    agent_id      uuid NOT NULL REFERENCES agents (id),
    position      integer NOT NULL,              -- 0 is the host; rotation order
    status        text NOT NULL DEFAULT 'invited' CHECK (status IN ('invited', 'present', 'left')),
    last_turn_seq bigint NOT NULL DEFAULT 0,     -- history seq at the end of its last turn
    joined_at     timestamptz,
    left_at       timestamptz,
    PRIMARY KEY (meeting_id, agent_id)
);

-- Meeting history: spoken messages and system events, gap-free seq per meeting.
CREATE TABLE meeting_events (
    meeting_id  uuid NOT NULL REFERENCES meetings (id),
    seq         bigint NOT NULL,
    type        text NOT NULL,
    agent_id    uuid REFERENCES agents (id),
    payload     jsonb,
    turn_number integer NOT NULL DEFAULT 0,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meeting_id, seq)
);
