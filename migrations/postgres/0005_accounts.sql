-- Accounts: single-use email verification and password reset tokens (only their SHA-256
-- hashes), and the audit columns the account API reports.
CREATE TABLE account_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The address the link was mailed to: a verification proves this address only.
    email       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry ON account_tokens (expires_at);

ALTER TABLE audit_events ADD COLUMN user_agent TEXT;
ALTER TABLE audit_events ADD COLUMN trace_id TEXT;
CREATE INDEX audit_events_subject ON audit_events (subject, at);
CREATE INDEX audit_events_kind ON audit_events (kind, at);
CREATE INDEX users_created ON users (created_at);
