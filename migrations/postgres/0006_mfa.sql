-- Multi-factor sign-in: second factors (TOTP keys sealed under the master key, passkeys'
-- public credentials), hashed single-use recovery codes, and short-lived single-use
-- challenges (half-finished sign-ins, WebAuthn ceremonies) that any instance can finish.
CREATE TABLE mfa_factors (
    id            UUID PRIMARY KEY NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('totp', 'passkey')),
    name          TEXT NOT NULL,
    -- TOTP: the shared key, AES-256-GCM sealed under the master key.
    secret_sealed BYTEA,
    -- TOTP: the last time step accepted; a code is accepted once (RFC 6238 §5.2).
    last_step     BIGINT,
    -- Passkeys: the credential id (base64url) and the public credential (JSON).
    credential_id TEXT UNIQUE,
    credential    TEXT,
    -- NULL while a TOTP enrollment waits for its first code.
    confirmed_at  BIGINT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX mfa_factors_user ON mfa_factors (user_id);

CREATE TABLE mfa_recovery_codes (
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE mfa_challenges (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    user_id    UUID REFERENCES users (id) ON DELETE CASCADE,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX mfa_challenges_expiry ON mfa_challenges (expires_at);

-- Consecutive failed second-factor attempts (NIST SP 800-63B §5.2.2: at most 100).
ALTER TABLE users ADD COLUMN mfa_failures BIGINT NOT NULL DEFAULT 0;

-- Tokens from a refresh keep how the user signed in.
ALTER TABLE refresh_tokens ADD COLUMN amr TEXT NOT NULL DEFAULT '[]';
ALTER TABLE refresh_tokens ADD COLUMN acr TEXT;
ALTER TABLE clients ADD COLUMN require_mfa BOOLEAN NOT NULL DEFAULT FALSE;
