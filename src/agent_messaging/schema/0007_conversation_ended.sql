-- A request or chat line resolves its session in the statement that writes it: the pair's active session,
-- else the one its runtime knows. That one may have been ended by another runtime meanwhile; the statement
-- then raises (instead of writing into the ended session) and the runtime starts a new session.
CREATE FUNCTION agent_messaging_conversation_ended(c uuid) RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'agent_messaging: conversation % has ended', c
        USING ERRCODE = 'AM003', HINT = 'the next message between the pair starts a new conversation';
END $$;
