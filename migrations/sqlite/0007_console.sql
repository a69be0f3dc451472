-- Administration: clients can be switched off; consents get an id of their own (for the admin
-- API and the account pages); lower-cased names beside the emails, so that search by prefix
-- of email, name or client name is a range scan of an index.
ALTER TABLE clients ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN name_lower TEXT NOT NULL DEFAULT '';
UPDATE clients SET name_lower = lower(name);
CREATE INDEX clients_name_lower ON clients (name_lower);
CREATE INDEX clients_created ON clients (created_at);

ALTER TABLE users ADD COLUMN name_lower TEXT;
UPDATE users SET name_lower = lower(name);
CREATE INDEX users_name_lower ON users (name_lower);

ALTER TABLE consents ADD COLUMN id BLOB;
UPDATE consents SET id = randomblob(16);
CREATE UNIQUE INDEX consents_id ON consents (id);

CREATE INDEX browser_sessions_sid ON browser_sessions (sid);
CREATE INDEX refresh_tokens_user_client ON refresh_tokens (user_id, client_id);
CREATE INDEX authorization_codes_user_client ON authorization_codes (user_id, client_id);

-- SQLite cannot add a NOT NULL column without a constant default: a consent inserted without
-- an id (by an older binary during an upgrade) gets one here.
CREATE TRIGGER consents_id_default AFTER INSERT ON consents WHEN NEW.id IS NULL
BEGIN
    UPDATE consents SET id = randomblob(16) WHERE rowid = NEW.rowid;
END;
