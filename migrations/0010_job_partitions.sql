-- A job's log lines and steps live in partitions by ranges of job IDs.
-- Job IDs only grow, so a range is a window of creation time: once every
-- job of a range finished before the retention cutoff, the scheduler drops
-- the range's partitions in one statement instead of deleting millions of
-- rows one by one (crust_store::jobs::retention).
--
-- The `jobs` table itself stays one table: the idempotency-key and
-- one-child-per-step unique indexes must hold across all jobs, and Postgres
-- enforces a unique index on a partitioned table only if it contains the
-- partition key. A job is one row beside its ~10 log lines and steps, so
-- deleting the jobs of a dropped range is the small part of the work.
--
-- The scheduler creates ranges ahead of the newest job ID. A row whose
-- range does not exist (yet) goes to the DEFAULT partition, so a scheduler
-- that falls behind costs speed of pruning, never a failed write; rows in
-- the default partition are pruned row by row, as before.

-- The ranges that exist, [lo, hi), kept in the same transaction as the
-- partitions they name.
CREATE TABLE job_partitions (
    lo         BIGINT      PRIMARY KEY,
    hi         BIGINT      NOT NULL CHECK (hi > lo),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the range's partitions were dropped; the row goes once the
    -- range's job rows are deleted too (in batches, after the drop).
    dropped_at TIMESTAMPTZ
);

ALTER TABLE job_logs RENAME TO job_logs_unpartitioned;
ALTER TABLE job_logs_unpartitioned RENAME CONSTRAINT job_logs_pkey TO job_logs_unpartitioned_pkey;
CREATE TABLE job_logs (LIKE job_logs_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (job_id);
ALTER TABLE job_logs ADD PRIMARY KEY (job_id, seq);
ALTER TABLE job_logs ADD FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;
CREATE TABLE job_logs_default PARTITION OF job_logs DEFAULT;

ALTER TABLE job_steps RENAME TO job_steps_unpartitioned;
ALTER TABLE job_steps_unpartitioned RENAME CONSTRAINT job_steps_pkey TO job_steps_unpartitioned_pkey;
CREATE TABLE job_steps (LIKE job_steps_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (job_id);
ALTER TABLE job_steps ADD PRIMARY KEY (job_id, task, item);
ALTER TABLE job_steps ADD FOREIGN KEY (job_id) REFERENCES jobs (id) ON DELETE CASCADE;
CREATE TABLE job_steps_default PARTITION OF job_steps DEFAULT;

-- The jobs that exist now get one range of their own, so their rows do not
-- sit in the default partition (which every new range must check).
DO $$
DECLARE
    top BIGINT := (SELECT coalesce(max(id), 0) + 1 FROM jobs);
BEGIN
    EXECUTE format('CREATE TABLE job_logs_p0 PARTITION OF job_logs FOR VALUES FROM (0) TO (%s)', top);
    EXECUTE format('CREATE TABLE job_steps_p0 PARTITION OF job_steps FOR VALUES FROM (0) TO (%s)', top);
    INSERT INTO job_partitions (lo, hi) VALUES (0, top);
END $$;
INSERT INTO job_logs SELECT * FROM job_logs_unpartitioned;
DROP TABLE job_logs_unpartitioned;
INSERT INTO job_steps SELECT * FROM job_steps_unpartitioned;
DROP TABLE job_steps_unpartitioned;

-- Deleting a job looks up its signals; without this index each delete
-- scanned the whole table.
CREATE INDEX job_signals_by_job ON job_signals (job_id);
-- Deleting a job sets `rerunOf` of its reruns to NULL; without this index
-- each delete scanned every job, making the prune quadratic.
CREATE INDEX jobs_reruns ON jobs (rerun_of) WHERE rerun_of IS NOT NULL;
