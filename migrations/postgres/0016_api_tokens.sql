-- Tokens for APIs (issue 19): registered resources (RFC 8707), the resources each client may
-- ask tokens for, DPoP (RFC 9449) key bindings, and the DPoP proof ids seen recently.

-- An API: its resource identifier (an absolute URI without fragment, RFC 8707 §2), the
-- scopes that belong to it (a JSON list), and its own access-token lifetime (NULL: the
-- deployment's `tokens.access_token_ttl_secs`).
CREATE TABLE api_resources (
    identifier              TEXT PRIMARY KEY NOT NULL,
    scopes                  TEXT NOT NULL,
    access_token_ttl_secs   BIGINT,
    created_at              BIGINT NOT NULL
);

-- The resources a client may ask tokens for (a JSON list of identifiers), and RFC 9449 §5.2
-- `dpop_bound_access_tokens`.
ALTER TABLE clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens BOOLEAN NOT NULL DEFAULT FALSE;

-- RFC 8707 §2.1: the resources granted at authorization travel with the code into the
-- refresh family, whose tokens may then be minted for any of them.
ALTER TABLE authorization_codes ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
-- RFC 9449 §10: the JWK thumbprint a code is bound to (`dpop_jkt`, or a proof at /par).
ALTER TABLE authorization_codes ADD COLUMN dpop_jkt TEXT;
ALTER TABLE refresh_tokens ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';
-- RFC 9449 §5: a public client's refresh tokens are bound to the JWK thumbprint of its key.
ALTER TABLE refresh_tokens ADD COLUMN dpop_jkt TEXT;

-- RFC 9449 §11.1: the `jti` of every DPoP proof accepted within its validity window (as
-- SHA-256 hex), when Redis is not configured; one insert decides which of two uses wins.
CREATE TABLE dpop_proofs (
    jti_hash    TEXT PRIMARY KEY NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs (expires_at);
