-- The SQLite stores: devices per account token, conversations awaiting deletion, and a check
-- that the server secret is the one the rows were written with. No token is stored in clear:
-- see the doc comment of src/outbound/store/sqlite.rs.

-- One row: HMAC-SHA256(server secret, a fixed label); a different secret is refused at start.
CREATE TABLE store_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_check BLOB NOT NULL
);

-- The device registered for each account token, keyed by HMAC-SHA256(server secret, token).
CREATE TABLE devices (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    registered_at_ms INTEGER NOT NULL
);

-- Conversations the proxy created upstream and has not deleted yet. The token is needed to
-- delete them, so it is kept sealed with AES-256-GCM (random nonce per row, the conversation
-- id as associated data), next to its keyed hash.
CREATE TABLE sessions (
    conversation TEXT PRIMARY KEY NOT NULL,
    token_hash BLOB NOT NULL,
    token_nonce BLOB NOT NULL,
    token_sealed BLOB NOT NULL,
    last_used_ms INTEGER NOT NULL,
    retry_at_ms INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);

-- What the sweeper's `due()` scans: idle ones, oldest first.
CREATE INDEX sessions_by_last_use ON sessions (last_used_ms, retry_at_ms);
-- Finding an account's conversations without its token in clear.
CREATE INDEX sessions_by_token ON sessions (token_hash);
