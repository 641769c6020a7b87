-- The job write path (issue 13): less work per log line, step and update.

-- Log lines and steps are written only by statements that lock their job's
-- row first (a log append bumps `jobs.log_seq`; a step write is fenced on
-- the run's attempt with FOR SHARE; a rerun copies steps in the transaction
-- that creates the job), so a foreign key's check on every inserted row (a
-- lookup and a KEY SHARE lock of the job, ~50 µs a line) proves nothing new.
-- Deleting a job still deletes its lines and steps, by this trigger instead
-- of the keys' ON DELETE CASCADE (the same row-by-row deletes); retention
-- drops whole partitions first, so these deletes usually find nothing.
DO $$
DECLARE
    c RECORD;
BEGIN
    FOR c IN SELECT conrelid::regclass AS tab, conname FROM pg_constraint
             WHERE contype = 'f' AND confrelid = 'jobs'::regclass
               AND conrelid IN ('job_logs'::regclass, 'job_steps'::regclass)
               AND conparentid = 0
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
    END LOOP;
END $$;

CREATE FUNCTION crust_delete_job_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_logs WHERE job_id = OLD.id;
    DELETE FROM job_steps WHERE job_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_delete_rows AFTER DELETE ON jobs FOR EACH ROW
    EXECUTE FUNCTION crust_delete_job_rows();

-- A job's row is updated 3–4 times in its life (claim, log appends,
-- outcome). Free room on each page lets an update that changes no indexed
-- column (a log append's `log_seq`) stay on the page as a HOT update,
-- without a new entry in each of the table's indexes; pages filled to the
-- brim (the default) leave no room for it.
ALTER TABLE jobs SET (fillfactor = 70);

-- A transaction that notifies holds a lock for the whole database from
-- just before its commit until that commit is flushed, so notifying
-- writers commit one at a time, each with its own flush. The worker, which
-- writes nearly every log line and outcome, sends these notifications
-- itself after its commits, in a transaction that does not wait for a
-- flush (crust_store::jobs::follow): its sessions set `crust.notify` to
-- `after`, and these triggers skip its own statements (trigger depth 0).
-- Updates made by trigger functions (a cancelled job's children) still
-- notify here.
DROP TRIGGER jobs_notify_logs ON jobs;
CREATE TRIGGER jobs_notify_logs AFTER UPDATE OF log_seq ON jobs FOR EACH ROW
    WHEN (NEW.log_seq > OLD.log_seq
          AND (pg_trigger_depth() > 0
               OR current_setting('crust.notify', true) IS DISTINCT FROM 'after'))
    EXECUTE FUNCTION crust_notify_job_logs();
DROP TRIGGER jobs_notify_finished ON jobs;
CREATE TRIGGER jobs_notify_finished AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN ('ok', 'error', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status
          AND (pg_trigger_depth() > 0
               OR current_setting('crust.notify', true) IS DISTINCT FROM 'after'))
    EXECUTE FUNCTION crust_notify_job_status();
