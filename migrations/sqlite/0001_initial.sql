-- Portcullis schema, SQLite dialect. Times are Unix seconds (UTC); ids are UUIDs stored as
-- 16-byte blobs; lists are JSON arrays of strings. Secrets are never stored: only SHA-256
-- hashes of codes, refresh tokens, session ids and client secrets.

CREATE TABLE users (
    id              BLOB PRIMARY KEY NOT NULL,
    email           TEXT NOT NULL,
    email_lower     TEXT NOT NULL UNIQUE,
    email_verified  BOOLEAN NOT NULL DEFAULT FALSE,
    name            TEXT,
    password_hash   TEXT,
    roles           TEXT NOT NULL DEFAULT '[]',
    disabled        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    deleted_at      INTEGER
);

CREATE TABLE clients (
    id                          TEXT PRIMARY KEY NOT NULL,
    name                        TEXT NOT NULL,
    secret_hash                 TEXT,
    redirect_uris               TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris   TEXT NOT NULL DEFAULT '[]',
    grant_types                 TEXT NOT NULL DEFAULT '[]',
    scope                       TEXT NOT NULL,
    token_endpoint_auth_method  TEXT NOT NULL,
    first_party                 BOOLEAN NOT NULL DEFAULT FALSE,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY NOT NULL,
    alg             TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    public_jwk      TEXT NOT NULL,
    private_key     BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    activated_at    INTEGER,
    retired_at      INTEGER
);
-- At most one active and one next key per algorithm, whatever races between instances.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (alg) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (alg) WHERE state = 'next';

CREATE TABLE browser_sessions (
    id_hash         TEXT PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time       INTEGER NOT NULL,
    amr             TEXT NOT NULL DEFAULT '[]',
    acr             TEXT,
    user_agent      TEXT,
    ip              TEXT,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    revoked_at      INTEGER
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);

CREATE TABLE authorization_codes (
    code_hash               TEXT PRIMARY KEY NOT NULL,
    client_id               TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id                 BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id_hash         TEXT,
    redirect_uri            TEXT NOT NULL,
    scope                   TEXT NOT NULL,
    nonce                   TEXT,
    code_challenge          TEXT,
    code_challenge_method   TEXT,
    auth_time               INTEGER NOT NULL,
    amr                     TEXT NOT NULL DEFAULT '[]',
    acr                     TEXT,
    created_at              INTEGER NOT NULL,
    expires_at              INTEGER NOT NULL,
    used_at                 INTEGER
);
CREATE INDEX authorization_codes_expiry ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    id                  BLOB PRIMARY KEY NOT NULL,
    token_hash          TEXT NOT NULL UNIQUE,
    family_id           BLOB NOT NULL,
    parent_id           BLOB,
    generation          INTEGER NOT NULL,
    client_id           TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id             BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope               TEXT NOT NULL,
    session_id_hash     TEXT,
    auth_code_hash      TEXT,
    user_agent          TEXT,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    family_expires_at   INTEGER NOT NULL,
    used_at             INTEGER,
    revoked_at          INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE consents (
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE audit_events (
    id          BLOB PRIMARY KEY NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    actor       TEXT,
    subject     TEXT,
    client_id   TEXT,
    ip          TEXT,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at);
