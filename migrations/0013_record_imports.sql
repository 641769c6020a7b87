-- CSV imports of records (POST /module/{id}/record/import): the upload is
-- stored in chunks in the same transaction as its job; the worker's
-- `record.import` task reads it back and commits its progress (`done_line`)
-- with every batch of records, so a rerun after a lost worker continues
-- where the last run stopped instead of importing rows twice.

-- A workflow Crust itself defines and runs (the CSV import); users may run
-- and pause it but not edit or delete it.
ALTER TABLE workflows ADD COLUMN builtin TEXT;
CREATE UNIQUE INDEX workflows_builtin ON workflows (builtin) WHERE builtin IS NOT NULL;

CREATE TABLE record_imports (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    module_id  BIGINT      NOT NULL REFERENCES modules (id),
    user_id    BIGINT      NOT NULL,
    -- The job that runs it; the import goes with the job's retention.
    job_id     BIGINT      REFERENCES jobs (id) ON DELETE CASCADE,
    dry_run    BOOLEAN     NOT NULL,
    bytes      BIGINT      NOT NULL DEFAULT 0,
    -- The last CSV line whose outcome is committed, and the counts so far.
    done_line  BIGINT      NOT NULL DEFAULT 0,
    created    BIGINT      NOT NULL DEFAULT 0,
    failed     BIGINT      NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX record_imports_job ON record_imports (job_id);

-- The upload, in pieces of at most 1 MiB, in order; deleted once imported.
CREATE TABLE record_import_chunks (
    import_id BIGINT  NOT NULL REFERENCES record_imports (id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    data      BYTEA   NOT NULL,
    PRIMARY KEY (import_id, seq)
);
