-- A workflow's webhook (`POST /hook/{workflowID}`): the HMAC-SHA256 key its
-- deliveries are signed with; NULL = no webhook. Kept out of the versioned
-- definition (a credential has no history) and never shown by the api.
ALTER TABLE workflows ADD COLUMN webhook_secret TEXT
    CHECK (length(webhook_secret) BETWEEN 16 AND 256);
