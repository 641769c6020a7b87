-- Secrets referenced by task params as {{ secrets.name }}: each value sealed
-- with XChaCha20-Poly1305 under CRUST_SECRETS_KEY (crust_store::secrets);
-- Postgres never sees a value in the clear.
CREATE TABLE secrets (
    name       TEXT        PRIMARY KEY CHECK (name ~ '^[A-Za-z][A-Za-z0-9_]{0,63}$'),
    -- The first 8 bytes of the sealing key's SHA-256, in hex: says which
    -- key opens it during a rotation.
    key_id     TEXT        NOT NULL,
    nonce      BYTEA       NOT NULL CHECK (length(nonce) = 24),
    sealed     BYTEA       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ
);
