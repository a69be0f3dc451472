-- Pushed authorization requests (RFC 9126): what a client pushed to `/par`, found again by
-- the SHA-256 of the random part of its request_uri (the URI itself is never stored). The
-- parameters are the validated authorization request, form-encoded, without the client's
-- credentials. `opened_at`: the first time a browser brought it to `/authorize` (from then on
-- `expires_at` is the end of the sign-in); `consumed_at`: the code was issued.
CREATE TABLE pushed_authorization_requests (
    uri_hash    TEXT PRIMARY KEY NOT NULL,
    client_id   TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    params      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    opened_at   BIGINT,
    consumed_at BIGINT
);
CREATE INDEX pushed_authorization_requests_expiry ON pushed_authorization_requests (expires_at);
