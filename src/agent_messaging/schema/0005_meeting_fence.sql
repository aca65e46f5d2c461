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
