-- Dynamic client registration (RFC 7591) and its management (RFC 7592). A client that
-- registers itself is an ordinary `clients` row (dynamic = TRUE); what only such a client has
-- lives here. Tokens are kept as SHA-256 hashes only.

-- Initial access tokens (RFC 7591 §3) made by `portcullis client registration-token`.
CREATE TABLE initial_access_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX initial_access_tokens_expires ON initial_access_tokens (expires_at);

-- One row per dynamically registered client: its registration access token (RFC 7592 §1.2,
-- replaced on every read and update), how it registered, and when it was first issued a
-- token (a client never used is deleted after `registration.unused_client_ttl_secs`).
CREATE TABLE client_registrations (
    client_id           TEXT PRIMARY KEY NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    access_token_hash   TEXT NOT NULL,
    mode                TEXT NOT NULL CHECK (mode IN ('open', 'initial_token')),
    created_at          BIGINT NOT NULL,
    used_at             BIGINT
);
