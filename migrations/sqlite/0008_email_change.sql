-- Account pages: a mailed token may also confirm a new email address ('email_change'; its
-- `email` is the new address). SQLite cannot change a CHECK constraint, so the table is
-- rebuilt with its rows and indexes (nothing references it).
CREATE TABLE account_tokens_new (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset', 'email_change')),
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The address the link was mailed to: a verification proves this address only.
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
INSERT INTO account_tokens_new (token_hash, purpose, user_id, email, created_at, expires_at, used_at)
    SELECT token_hash, purpose, user_id, email, created_at, expires_at, used_at FROM account_tokens;
DROP TABLE account_tokens;
ALTER TABLE account_tokens_new RENAME TO account_tokens;
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);
