-- Record-event triggers (workflow `triggers`) and record revisions.

-- A workflow's triggers as saved (what `GET /workflow/{id}` shows)...
ALTER TABLE workflows ADD COLUMN triggers JSONB NOT NULL DEFAULT '[]'::jsonb;
-- ...and one row per trigger, found by module on every record write.
CREATE TABLE workflow_triggers (
    workflow_id   BIGINT  NOT NULL REFERENCES workflows (id),
    position      INTEGER NOT NULL,
    module_id     BIGINT  NOT NULL,
    event         TEXT    NOT NULL
                  CHECK (event IN ('record.created', 'record.updated', 'record.deleted')),
    filter        TEXT    NOT NULL DEFAULT '',
    fields        TEXT[]  NOT NULL DEFAULT '{}',
    debounce_secs INTEGER NOT NULL DEFAULT 0 CHECK (debounce_secs >= 0),
    PRIMARY KEY (workflow_id, position)
);
CREATE INDEX workflow_triggers_by_module ON workflow_triggers (module_id);

-- Bumped (in the saving transaction) whenever a workflow's triggers on this
-- module may have changed; every record write checks it against the
-- trigger set its process compiled, in the same statement.
ALTER TABLE modules ADD COLUMN triggers_stamp BIGINT NOT NULL DEFAULT 0;

-- A triggered job's place in a chain of triggers (0: not triggered by a
-- job's write), and, for a debounced trigger, the record whose events it
-- collects while it is queued and unpublished.
ALTER TABLE jobs ADD COLUMN trigger_depth INTEGER NOT NULL DEFAULT 0,
                 ADD COLUMN debounce_key  TEXT;
CREATE INDEX jobs_debounce ON jobs (workflow_id, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'queued' AND published_at IS NULL;

-- One row per change of a record, written by the statement that makes it.
-- Records are only ever soft-deleted, so revisions live as long as their
-- record row (no foreign key: it would cost every write a lookup).
CREATE TABLE record_revisions (
    module_id  BIGINT      NOT NULL,
    record_id  BIGINT      NOT NULL,
    revision   INTEGER     NOT NULL,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    operation  TEXT        NOT NULL CHECK (operation IN ('created', 'updated', 'deleted')),
    -- Exactly one of user_id and job_id: who made the change.
    user_id    BIGINT,
    job_id     BIGINT,
    task       TEXT,
    changes    JSONB       NOT NULL,
    PRIMARY KEY (module_id, record_id, revision)
);
