-- Upstream sign-in (issue 14): the identities at upstream providers that sign a user in. A
-- person is found by (provider, upstream subject), never by email; one identity per provider
-- per user. The address and name are the upstream's, as last seen, for the account pages.
CREATE TABLE user_identities (
    provider      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         TEXT,
    name          TEXT,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    PRIMARY KEY (provider, subject)
);
CREATE UNIQUE INDEX user_identities_user_provider ON user_identities (user_id, provider);
