-- Account pages: a mailed token may also confirm a new email address ('email_change'; its
-- `email` is the new address).
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('verify_email', 'password_reset', 'email_change'));
