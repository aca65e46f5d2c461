-- One open dead letter per message. The dead-lettering statement's NOT EXISTS check does not hold between
-- two concurrent writes (an undecodable message met by the hosted catch-up and by get_unread_messages at the
-- same time): a unique index makes the second one do nothing. Open duplicates left by earlier versions go
-- first (the oldest of each message stays; retrying it requeues the message once).
DELETE FROM dead_letters d USING dead_letters e
    WHERE d.message_id = e.message_id AND d.retried_at IS NULL AND e.retried_at IS NULL AND e.id < d.id;
CREATE UNIQUE INDEX dead_letters_open_message ON dead_letters (message_id) WHERE retried_at IS NULL;
