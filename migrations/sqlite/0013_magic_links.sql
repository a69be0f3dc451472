-- Magic links (issue 14): a mailed, single-use sign-in link. Only the SHA-256 of its 256-bit
-- token is stored, with the SHA-256 of the random nonce held in a cookie of the browser that
-- asked for it (the link works in that browser only), and the authorization request the
-- login page was showing, to continue after the sign-in.
CREATE TABLE magic_links (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    nonce_hash  TEXT NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The address the link was mailed to: it must still be the account's when it is used.
    email       TEXT NOT NULL,
    return_to   TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX magic_links_user ON magic_links (user_id);
CREATE INDEX magic_links_expiry ON magic_links (expires_at);
