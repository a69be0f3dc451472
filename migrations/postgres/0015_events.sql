-- Events (issue 18): the transactional outbox, webhook subscriptions and their deliveries.
-- An event row is written in the same transaction as the change it describes; workers then
-- fan it out to the webhooks that want it (one delivery row each) and, when configured, add
-- it to a Redis stream. Nothing here is a secret except the webhook signing secret, which is
-- sealed under the master key (AES-256-GCM), never stored in the clear.
CREATE TABLE events (
    -- UUIDv7: sorts by time, so `ORDER BY id` is the order events were written in.
    id            UUID PRIMARY KEY NOT NULL,
    type          TEXT NOT NULL,
    occurred_at   BIGINT NOT NULL,
    -- The event's JSON envelope, exactly as webhooks and the stream receive it.
    payload       TEXT NOT NULL,
    -- When its delivery rows were made (NULL: still waiting for the fan-out).
    fanned_out_at BIGINT,
    -- When it was added to the Redis stream (NULL: not yet, or no stream configured).
    streamed_at   BIGINT
);
CREATE INDEX events_fan_out ON events (fanned_out_at, id);
CREATE INDEX events_stream ON events (streamed_at, id);
CREATE INDEX events_type_time ON events (type, occurred_at);
CREATE INDEX events_time ON events (occurred_at);

CREATE TABLE webhooks (
    id            UUID PRIMARY KEY NOT NULL,
    url           TEXT NOT NULL,
    -- JSON list of event types; empty: every type.
    event_types   TEXT NOT NULL DEFAULT '[]',
    -- The signing key (the bytes after `whsec_`), sealed under the master key with the
    -- webhook id as associated data.
    secret_sealed BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              UUID PRIMARY KEY NOT NULL,
    webhook_id      UUID NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- pending | delivered | dead (dead-lettered after the last attempt)
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- A claim by one instance; another may take the row once the lease has run out.
    leased_by       TEXT,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_lease ON webhook_deliveries (leased_by);
