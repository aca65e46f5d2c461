-- Fenced ownership: a runtime seen dead must stay dead for a lease before another takes over what it
-- hosted or ran (a live runtime that lost its connection stops handling well within the lease), and a
-- meeting's state is written only by the runtime the database records as its runner. A deregistered
-- agent receives nothing, whatever an other runtime's cache says.

-- absent_since: when a claimer first saw the owner's lock gone; lease: the owner's ownership_lease (a
-- claimer waits the longer of the owner's and its own); generation: bumped by every claim of a meeting, so
-- a transition of an earlier claim (held up in a writer through an outage) cannot land after a later one.
ALTER TABLE agent_hosts ADD COLUMN absent_since timestamptz, ADD COLUMN lease real NOT NULL DEFAULT 2;
ALTER TABLE meeting_hosts ADD COLUMN absent_since timestamptz, ADD COLUMN lease real NOT NULL DEFAULT 2,
    ADD COLUMN generation bigint NOT NULL DEFAULT 1;

-- Raises unless claim generation g of runtime key k runs meeting m: read by every meeting transition's
-- commit. The row stays share-locked until that commit, so a claim by another runtime waits for it.
CREATE FUNCTION agent_messaging_check_runner(m uuid, k bigint, g bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM meeting_hosts WHERE meeting_id = m AND runtime_key = k AND generation = g FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent_messaging: meeting % is no longer run by this runtime', m
            USING ERRCODE = 'AM001', HINT = 'another runtime took it over; call the meeting again';
    END IF;
    RETURN true;
END $$;

-- A message to a deregistered agent is refused by the database itself, whatever a runtime's cache says
-- (a reply is not: its caller may have gone, and nobody reads it).
CREATE FUNCTION agent_messaging_live_recipient() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind <> 'reply' AND NOT EXISTS (SELECT 1 FROM agents WHERE id = NEW.recipient_id AND deregistered_at IS NULL) THEN
        RAISE EXCEPTION 'agent_messaging: recipient % is deregistered', NEW.recipient_id
            USING ERRCODE = 'AM002', HINT = 'the agent was deregistered; register it again to message it';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_live_recipient BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION agent_messaging_live_recipient();
