-- Token lifecycle: rotation bookkeeping for refresh tokens, per-client refresh policy,
-- back-channel logout and private_key_jwt registration, and replay protection of assertions.

ALTER TABLE refresh_tokens ADD COLUMN access_token_jti TEXT;
-- The successor, sealed under the master key, kept only while the grace window lasts.
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BLOB;
ALTER TABLE refresh_tokens ADD COLUMN reuse_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refresh_tokens ADD COLUMN auth_time INTEGER NOT NULL DEFAULT 0;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id_hash);

ALTER TABLE clients ADD COLUMN always_issue_refresh_token BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE clients ADD COLUMN backchannel_logout_session_required BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;

CREATE INDEX authorization_codes_session ON authorization_codes (session_id_hash);

CREATE TABLE client_assertion_jtis (
    client_id   TEXT NOT NULL,
    jti         TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
