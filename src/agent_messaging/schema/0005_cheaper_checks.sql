-- Cheaper checks, the same guarantees: meeting transitions fenced by the meeting row, and deregistered
-- recipients refused once per statement.

-- Meeting transitions are fenced by the meeting row itself (cheaper than 0004's check, which share-locked
-- the meeting_hosts row in a plpgsql call for every transition). A claim bumps meetings.runner_generation
-- in its own statement; every transition's UPDATE of the meeting row requires the generation of the claim
-- its actor was started with. The two take the same row lock, so whichever commits second sees the first:
-- a transition behind a claim finds the new generation (PostgreSQL re-checks the row it waited for) and
-- updates nothing, and its batch raises (agent_messaging_runner_moved); a claim behind a transition waits
-- for it, so the new runner loads the meeting with that transition in it.
ALTER TABLE meetings ADD COLUMN runner_generation bigint NOT NULL DEFAULT 1;
UPDATE meetings m SET runner_generation = h.generation FROM meeting_hosts h WHERE h.meeting_id = m.id;
ALTER TABLE meeting_hosts DROP COLUMN generation;
DROP FUNCTION agent_messaging_check_runner(uuid, bigint, bigint);

-- Raises: meeting m's transition updated no row (another claim runs it now). Called only for such rows.
CREATE FUNCTION agent_messaging_runner_moved(m uuid) RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'agent_messaging: meeting % is no longer run by this runtime', m
        USING ERRCODE = 'AM001', HINT = 'another runtime took it over; call the meeting again';
END $$;

-- A message to a deregistered agent is refused by one check per statement instead of a plpgsql call per
-- row (0004's trigger cost a fifth of a bulk insert's throughput): the inserted rows are joined to their
-- recipients once. A reply is not checked: its caller may have gone, and nobody reads it.
DROP TRIGGER messages_live_recipient ON messages;
DROP FUNCTION agent_messaging_live_recipient();
CREATE FUNCTION agent_messaging_live_recipients() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    gone uuid;
BEGIN
    SELECT n.recipient_id INTO gone FROM inserted n JOIN agents a ON a.id = n.recipient_id
        WHERE n.kind <> 'reply' AND a.deregistered_at IS NOT NULL LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'agent_messaging: recipient % is deregistered', gone
            USING ERRCODE = 'AM002', HINT = 'the agent was deregistered; register it again to message it';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_live_recipients AFTER INSERT ON messages REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION agent_messaging_live_recipients();
