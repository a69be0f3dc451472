-- Protocol reach: client fields that pushed authorization requests (RFC 9126 §6) and dynamic
-- client registration (RFC 7591 §2) add to a client's registration. The device flow, PAR and
-- registration each keep their own state in tables of their own (0010 and on).
ALTER TABLE clients ADD COLUMN require_par BOOLEAN NOT NULL DEFAULT FALSE;
-- Registered by the client itself through `/connect/register` rather than by an operator.
ALTER TABLE clients ADD COLUMN dynamic BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clients ADD COLUMN logo_uri TEXT;
ALTER TABLE clients ADD COLUMN client_uri TEXT;
-- OIDC Dynamic Client Registration §2: "web" or "native".
ALTER TABLE clients ADD COLUMN application_type TEXT NOT NULL DEFAULT 'web';
