-- Named queues: a workflow names the queue its jobs go to (broker queue
-- `<prefix>.jobs.<queue>`), and each job carries its queue from creation, so
-- publishing a job (api, scheduler) needs no join.
ALTER TABLE workflows ADD COLUMN queue TEXT NOT NULL DEFAULT 'default'
    CHECK (queue ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$');
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';

-- Every path that creates a job (the api's create, bulk create and rerun,
-- a cron slot, a child started by a `workflow` step) and a queued job's
-- change of `workflowID` takes the workflow's queue here, so none of them can forget it. Like its version, a job keeps
-- the queue it was created with when its workflow later changes queue.
CREATE FUNCTION crust_job_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT queue INTO NEW.queue FROM workflows WHERE id = NEW.workflow_id;
    NEW.queue := coalesce(NEW.queue, 'default');
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_queue BEFORE INSERT OR UPDATE OF workflow_id ON jobs
    FOR EACH ROW EXECUTE FUNCTION crust_job_queue();

-- The scheduler's search for lost hints: queued jobs that were published,
-- per queue, oldest publish first.
CREATE INDEX jobs_published_queued ON jobs (queue, published_at)
    WHERE status = 'queued' AND published_at IS NOT NULL;
