-- Visibility (issue 14): job search, live logs, the worker list.

-- Job search: `parameters.<name> = literal` compiles to containment
-- (`parameters @> jsonb_build_object(...)`), which this index answers;
-- jsonb_path_ops is smaller and faster than the default opclass for @>.
-- Other columns reuse jobs_by_status (status, id DESC) and the primary key.
CREATE INDEX jobs_parameters ON jobs USING gin (parameters jsonb_path_ops);
CREATE INDEX jobs_by_workflow ON jobs (workflow_id, id DESC);

-- Live logs: every writer of log lines (worker, api, scheduler) hands out
-- their seq numbers by bumping jobs.log_seq in the same statement or
-- transaction as the insert, so a trigger on that bump notifies
-- `<jobID>:<new log_seq>` (on jobs, not job_logs: migration 0010 rebuilds
-- job_logs as a partitioned table after this one). A job reaching a final
-- status notifies its ID. pg_notify is transactional: the api's listener
-- hears it at the writer's commit, when the lines (and the status) are
-- visible.
CREATE FUNCTION crust_notify_job_logs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crust_job_logs', NEW.id::text || ':' || NEW.log_seq::text);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify_logs AFTER UPDATE OF log_seq ON jobs FOR EACH ROW
    WHEN (NEW.log_seq > OLD.log_seq)
    EXECUTE FUNCTION crust_notify_job_logs();

CREATE FUNCTION crust_notify_job_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('crust_job_status', NEW.id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify_finished AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('ok', 'error', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION crust_notify_job_status();

-- Live workers: each worker upserts its row at every heartbeat, saying how
-- long it counts as live (a few heartbeats); a row past expires_at is not
-- live (GET /worker/ hides and prunes it). A stopping worker deletes its row.
CREATE TABLE workers (
    name         TEXT        PRIMARY KEY,
    queues       TEXT[]      NOT NULL DEFAULT '{default}',
    concurrency  INTEGER     NOT NULL,
    running      INTEGER     NOT NULL DEFAULT 0,
    started_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);
