-- Workflows as graphs with durable steps: versions, steps, waiting, signals.

-- Every saved definition of a workflow; a job runs the version it was
-- created with, so editing a workflow never changes jobs already created.
ALTER TABLE workflows ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
-- Tasks of one job that run at once, at most.
ALTER TABLE workflows ADD COLUMN parallelism INTEGER NOT NULL DEFAULT 8
    CHECK (parallelism BETWEEN 1 AND 64);
-- Default job parameters, merged under each job's own at its creation.
ALTER TABLE workflows ADD COLUMN parameters JSONB NOT NULL DEFAULT '{}';
CREATE TABLE workflow_versions (
    workflow_id BIGINT      NOT NULL REFERENCES workflows (id),
    version     INTEGER     NOT NULL,
    -- The definition as the API shows it: name, tasks, onError, timeout,
    -- parameters, schedule (crust_model::workflow::Definition).
    definition  JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, version)
);
INSERT INTO workflow_versions (workflow_id, version, definition, created_at)
SELECT id, 1, jsonb_strip_nulls(jsonb_build_object(
           'name', name, 'tasks', tasks, 'onError', on_error, 'timeout', timeout_secs,
           'parameters', '{}'::jsonb, 'schedule', schedule)),
       coalesce(updated_at, created_at)
FROM workflows;

ALTER TABLE jobs
    ADD COLUMN workflow_version INTEGER,
    ADD COLUMN parent_job_id    BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    ADD COLUMN parent_step      TEXT,
    ADD COLUMN rerun_of         BIGINT REFERENCES jobs (id) ON DELETE SET NULL,
    -- When a waiting job is put back in the queue (a sleep's end, a wait's
    -- timeout); NULL waits for a signal or a child only.
    ADD COLUMN wake_at          TIMESTAMPTZ;
UPDATE jobs SET workflow_version = 1;
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'waiting', 'ok', 'error', 'cancelled'));
CREATE INDEX jobs_waking ON jobs (wake_at) WHERE status = 'waiting' AND wake_at IS NOT NULL;
CREATE INDEX jobs_children ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
-- One child per parent step (and forEach item): a resumed parent finds it.
CREATE UNIQUE INDEX jobs_one_child_per_step ON jobs (parent_job_id, parent_step)
    WHERE parent_job_id IS NOT NULL;

-- One row per step of a job (a task, or one item of a forEach task), written
-- as the step starts and ends, fenced on the run's attempt.
CREATE TABLE job_steps (
    job_id      BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task        TEXT        NOT NULL,
    -- -1 for the task itself; 0.. for the items of a forEach.
    item        INTEGER     NOT NULL DEFAULT -1,
    status      TEXT        NOT NULL
                CHECK (status IN ('running', 'waiting', 'ok', 'error', 'skipped', 'cancelled')),
    tries       INTEGER     NOT NULL DEFAULT 0,
    attempt     INTEGER     NOT NULL,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    -- A durable sleep's end, a wait's deadline.
    until_at    TIMESTAMPTZ,
    output      JSONB,
    error       TEXT,
    PRIMARY KEY (job_id, task, item)
);

-- Signals sent to a job, kept until a `wait` task takes them.
CREATE TABLE job_signals (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event      TEXT        NOT NULL,
    data       JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    taken_at   TIMESTAMPTZ
);
CREATE INDEX job_signals_pending ON job_signals (job_id, event, id) WHERE taken_at IS NULL;

-- A child job's end puts its waiting parent back in the queue, whatever
-- ended it (a worker, a cancel, the rescue of a lost worker, a workflow's
-- deletion): one rule in the database rather than one in each of those.
CREATE FUNCTION crust_wake_parent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET status = 'queued', wake_at = NULL, published_at = NULL,
                    release_at = now(), updated_at = now()
    WHERE id = NEW.parent_job_id AND status = 'waiting';
    IF FOUND THEN
        PERFORM pg_notify('crust_jobs_release', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_wake_parent AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.parent_job_id IS NOT NULL
          AND NEW.status IN ('ok', 'error', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION crust_wake_parent();

-- Cancelling a job cancels its children: queued or waiting ones end at
-- once, running ones are asked to stop (their worker sees it at its next
-- heartbeat). Their own children follow through this same trigger.
CREATE FUNCTION crust_cancel_children() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE jobs SET status = 'cancelled', cancel_requested = true, finished_at = now(),
                    wake_at = NULL, updated_at = now()
    WHERE parent_job_id = NEW.id AND status IN ('queued', 'waiting');
    UPDATE jobs SET cancel_requested = true, updated_at = now()
    WHERE parent_job_id = NEW.id AND status = 'running' AND NOT cancel_requested;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_cancel_children AFTER UPDATE OF status, cancel_requested ON jobs FOR EACH ROW
    WHEN ((NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM NEW.status)
          OR (NEW.cancel_requested AND NOT OLD.cancel_requested))
    EXECUTE FUNCTION crust_cancel_children();
