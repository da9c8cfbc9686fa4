-- The client that created a conversation (a label of its API key, never the key), when the
-- server has API keys: only it may continue the conversation.
ALTER TABLE sessions ADD COLUMN owner TEXT;

-- Conversations whose row could not be read (its sealed token does not open, or a column
-- holds the wrong type): moved here once, so that the rest of the sweep goes on. Kept, not
-- dropped: with the right store key restored, an operator can move them back.
CREATE TABLE sessions_unreadable (
    conversation TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB,
    token_nonce BLOB,
    token_sealed BLOB,
    last_used_ms INTEGER,
    owner TEXT,
    set_aside_at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL
);
