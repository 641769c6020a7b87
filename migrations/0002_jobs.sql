-- Workflows and the jobs that run them, with their logs.

CREATE TABLE workflows (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT        NOT NULL,
    tasks        JSONB       NOT NULL DEFAULT '[]'::jsonb,
    on_error     JSONB       NOT NULL DEFAULT '[]'::jsonb,
    timeout_secs INTEGER     NOT NULL DEFAULT 0 CHECK (timeout_secs >= 0),
    schedule     TEXT,
    -- The next cron slot to fire; the scheduler claims and advances it.
    next_fire_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ,
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX workflows_cron_due ON workflows (next_fire_at)
    WHERE next_fire_at IS NOT NULL AND deleted_at IS NULL;

CREATE TABLE jobs (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id      BIGINT      NOT NULL REFERENCES workflows (id),
    status           TEXT        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'ok', 'error', 'cancelled')),
    parameters       JSONB       NOT NULL DEFAULT '{}'::jsonb,
    start_at         TIMESTAMPTZ,
    -- Bumped by every claim; every write of a run is fenced on it.
    attempt          INTEGER     NOT NULL DEFAULT 0,
    -- When the current queued state was handed to the broker; NULL means
    -- "due for publishing" (by the api right after commit, else by the
    -- scheduler).
    published_at     TIMESTAMPTZ,
    -- When the scheduler may publish it if still unpublished: startAt for a
    -- delayed job; a short grace after creation for one the api publishes
    -- itself (so a crash between commit and publish loses nothing); now
    -- for one handed back or rescued.
    release_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The running worker's lease, renewed by heartbeat.
    lease_until      TIMESTAMPTZ,
    worker           TEXT,
    cancel_requested BOOLEAN     NOT NULL DEFAULT false,
    -- Last log sequence number handed out (log seq is gap-free per job).
    log_seq          INTEGER     NOT NULL DEFAULT 0,
    -- For cron jobs: the slot it fired for; one job per slot.
    cron_slot        TIMESTAMPTZ,
    -- W3C traceparent of the request (or schedule) that created it.
    trace_parent     TEXT,
    created_by       BIGINT      NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ,
    error            TEXT
);
CREATE UNIQUE INDEX jobs_one_per_cron_slot ON jobs (workflow_id, cron_slot) WHERE cron_slot IS NOT NULL;
-- The scheduler's work lists: queued jobs nobody has published, and leases.
CREATE INDEX jobs_unpublished ON jobs (release_at) WHERE status = 'queued' AND published_at IS NULL;
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE status = 'running';
CREATE INDEX jobs_by_status ON jobs (status, id DESC);
CREATE INDEX jobs_active_by_workflow ON jobs (workflow_id) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_logs (
    job_id   BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq      INTEGER     NOT NULL,
    ts       TIMESTAMPTZ NOT NULL,
    level    TEXT        NOT NULL,
    task     TEXT,
    message  TEXT        NOT NULL,
    data     JSONB,
    -- The run that wrote it (0 = written through the API).
    attempt  INTEGER     NOT NULL,
    PRIMARY KEY (job_id, seq)
);
