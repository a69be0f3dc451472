-- Device authorization grant (RFC 8628): one row per device code, kept under the SHA-256 of
-- the device code; the user code is kept only as its SHA-256 too (it is looked up by what the
-- person types, normalised). Status moves pending -> approved | denied -> redeemed, or to
-- expired, each step one conditional update.
CREATE TABLE device_grants (
    device_code_hash    TEXT PRIMARY KEY NOT NULL,
    user_code_hash      TEXT NOT NULL UNIQUE,
    client_id           TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scope               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'redeemed', 'expired')),
    -- RFC 8628 §3.5: the polling interval, grown by each slow_down.
    interval_secs       BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    last_polled_at      BIGINT,
    -- The approval: who, in which browser session, and how they signed in.
    user_id             UUID REFERENCES users (id) ON DELETE CASCADE,
    session_id_hash     TEXT,
    auth_time           BIGINT,
    amr                 TEXT NOT NULL DEFAULT '[]',
    acr                 TEXT,
    decided_at          BIGINT,
    redeemed_at         BIGINT,
    access_token_jti    TEXT
);
CREATE INDEX device_grants_expiry ON device_grants (expires_at);
CREATE INDEX device_grants_session ON device_grants (session_id_hash);
