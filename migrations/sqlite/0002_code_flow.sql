-- Authorization code flow: per-client signing algorithms, a public session id for the `sid`
-- claim, what a code issued, and a deny-list for access tokens revoked before they expire.

ALTER TABLE clients ADD COLUMN id_token_signed_response_alg TEXT;
ALTER TABLE clients ADD COLUMN access_token_signed_response_alg TEXT;

ALTER TABLE browser_sessions ADD COLUMN sid TEXT NOT NULL DEFAULT '';

ALTER TABLE authorization_codes ADD COLUMN redirect_uri_given BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE authorization_codes ADD COLUMN response_mode TEXT NOT NULL DEFAULT 'query';
ALTER TABLE authorization_codes ADD COLUMN access_token_jti TEXT;

CREATE TABLE revoked_access_tokens (
    jti         TEXT PRIMARY KEY NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens (expires_at);
