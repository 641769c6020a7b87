-- Flow control: concurrency keys (at most `limit` running jobs per workflow
-- and rendered key, exactly, across every worker) and rate limits (job
-- starts per workflow and rendered key, cluster-wide).
--
-- Concurrency works by *slots*: a job of a workflow with `concurrency`
-- carries its rendered key (`jobs.concurrency_key`, '' for "one key for the
-- whole workflow") and may be claimed only while it holds a slot
-- (`holds_slot`). Slots are handed out by `crust_grant_slots` only, under a
-- transaction-scoped advisory lock on the key, to the oldest due queued jobs
-- of the key (creation order = id order), so at most `limit` jobs of a key
-- ever hold one. A job keeps its slot while queued again for a retry (a lost
-- worker, a hand back), so it keeps its place; it gives it up when it ends
-- (ok, error, cancelled) or parks (`waiting`): a parked job holds no slot and
-- queues again behind older jobs when it wakes. The triggers below keep
-- these rules on every path that writes `jobs` (worker, api, scheduler, the
-- engine's own triggers), and the transaction that frees a slot hands it on
-- at once, notifying the scheduler, which publishes the new holder right
-- after the commit.

ALTER TABLE workflows
    -- As the API shows them: {key?, limit} and {key?, perSecond | perMinute}.
    ADD COLUMN concurrency          JSONB,
    ADD COLUMN rate_limit           JSONB,
    ADD COLUMN concurrency_limit    INTEGER CHECK (concurrency_limit >= 1),
    -- A key template compiled to [{"text": ".."} | {"path": [..], "default"?: ..}]
    -- (paths under `parameters`), so every job insert renders it in SQL.
    ADD COLUMN concurrency_key_spec JSONB,
    ADD COLUMN rate_key_spec        JSONB,
    -- Microseconds between two starts of one rate key (rounded up).
    ADD COLUMN rate_step_us         BIGINT CHECK (rate_step_us >= 1);

ALTER TABLE jobs
    ADD COLUMN concurrency_key TEXT,
    ADD COLUMN holds_slot      BOOLEAN NOT NULL DEFAULT false,
    -- When the job was last given a slot (the statement's now(): equal to
    -- the finished_at of the job whose end handed it over).
    ADD COLUMN slot_at         TIMESTAMPTZ,
    -- The grant round that gave it (rounds of one key are numbered in the
    -- order they ran, under the key's lock): slots go out in creation order.
    ADD COLUMN slot_seq        BIGINT,
    ADD COLUMN rate_key        TEXT,
    -- The start instant the job's last rate token allows (a token is used
    -- by the first claim at or after it).
    ADD COLUMN rate_at         TIMESTAMPTZ;

-- Slot holders and waiters of a key, in creation order.
CREATE INDEX jobs_concurrency ON jobs (workflow_id, concurrency_key, holds_slot, id)
    WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running');
-- Waiters whose start time has come (delayed jobs of a key): the scheduler's
-- fallback sweep.
CREATE INDEX jobs_slot_due ON jobs (release_at)
    WHERE concurrency_key IS NOT NULL AND status = 'queued' AND NOT holds_slot;

CREATE SEQUENCE jobs_slot_seq;

-- The next free start instant of each rate key.
CREATE TABLE rate_keys (
    workflow_id BIGINT      NOT NULL,
    key         TEXT        NOT NULL,
    next_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workflow_id, key)
);

-- Renders a compiled key template over a job's parameters: a string value
-- as itself, any other as its JSON text, a missing or null one as its
-- default (or "null"). Keys longer than 200 characters are replaced by a
-- digest, so the index stays small.
CREATE FUNCTION crust_render_key(spec JSONB, params JSONB) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN length(k) > 200 THEN 'md5:' || md5(k) ELSE k END
    FROM (SELECT coalesce(string_agg(
              CASE WHEN s ? 'text' THEN s ->> 'text'
                   ELSE (SELECT CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}' ELSE v::text END
                         FROM (SELECT coalesce(
                                   nullif(params #> ARRAY(SELECT jsonb_array_elements_text(s -> 'path')),
                                          'null'::jsonb),
                                   s -> 'default', 'null'::jsonb) AS v) found)
              END, '' ORDER BY ord), '') AS k
          FROM jsonb_array_elements(spec) WITH ORDINALITY AS e(s, ord)) rendered
$$;

-- The advisory lock of a concurrency key (a hash: a collision only makes
-- two keys wait for each other, never breaks the count).
CREATE FUNCTION crust_slot_lock_id(wf BIGINT, k TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT hashtextextended(wf::text || '/' || k, 13) $$;

-- Hands the free slots of key `k` of workflow `wf` to its oldest due queued
-- jobs that have none. Serialised per key by the advisory lock: the count
-- of holders is taken after the lock, so it sees every earlier grant
-- (a release not yet committed only makes it grant less; that release
-- grants again itself). Waiters left over wait with release_at = infinity.
CREATE FUNCTION crust_grant_slots(wf BIGINT, k TEXT) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    lim     INTEGER;
    held    INTEGER;
    granted INTEGER;
    total   INTEGER := 0;
    round   BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(crust_slot_lock_id(wf, k));
    -- No limit any more (the workflow's concurrency was removed): all go.
    SELECT coalesce(concurrency_limit, 2147483647) INTO lim FROM workflows WHERE id = wf;
    lim := coalesce(lim, 2147483647);
    LOOP
        SELECT count(*) INTO held FROM jobs
        WHERE workflow_id = wf AND concurrency_key = k AND holds_slot
          AND status IN ('queued', 'running');
        EXIT WHEN held >= lim;
        round := nextval('jobs_slot_seq');
        WITH next AS (
            SELECT id FROM jobs
            WHERE workflow_id = wf AND concurrency_key = k AND status = 'queued'
              AND NOT holds_slot AND (start_at IS NULL OR start_at <= now())
            ORDER BY id LIMIT lim - held FOR UPDATE)
        UPDATE jobs j SET holds_slot = true, slot_at = now(), slot_seq = round, release_at = now(),
                          published_at = NULL
        FROM next WHERE j.id = next.id;
        GET DIAGNOSTICS granted = ROW_COUNT;
        total := total + granted;
        -- None granted: no waiter left (a locked one that changed under the
        -- lock is skipped, and the next round counts again).
        EXIT WHEN granted = 0;
    END LOOP;
    -- Due waiters that got nothing wait for a release, out of the
    -- scheduler's sight.
    UPDATE jobs SET release_at = 'infinity'
    WHERE workflow_id = wf AND concurrency_key = k AND status = 'queued' AND NOT holds_slot
      AND release_at <= now();
    IF total > 0 THEN
        PERFORM pg_notify('crust_jobs_release', '');
    END IF;
    RETURN total;
END $$;

-- Takes the next start instant of rate key `k` of workflow `wf`: now, or
-- one step after the last one taken, whichever is later. A workflow that no
-- longer has a rate limit lets the job start now.
CREATE FUNCTION crust_rate_take(wf BIGINT, k TEXT) RETURNS TIMESTAMPTZ
LANGUAGE plpgsql AS $$
DECLARE
    step INTERVAL;
    at   TIMESTAMPTZ;
BEGIN
    SELECT rate_step_us * interval '1 microsecond' INTO step FROM workflows WHERE id = wf;
    IF step IS NULL THEN
        RETURN now();
    END IF;
    INSERT INTO rate_keys AS r (workflow_id, key, next_at) VALUES (wf, k, now() + step)
    ON CONFLICT (workflow_id, key) DO UPDATE SET next_at = greatest(r.next_at, now()) + step
    RETURNING next_at - step INTO at;
    RETURN at;
END $$;

-- On insert: render the keys of the job's workflow.
CREATE FUNCTION crust_jobs_keys() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c_spec JSONB;
    r_spec JSONB;
BEGIN
    SELECT concurrency_key_spec, rate_key_spec INTO c_spec, r_spec
    FROM workflows WHERE id = NEW.workflow_id;
    IF c_spec IS NOT NULL AND NEW.concurrency_key IS NULL THEN
        NEW.concurrency_key := crust_render_key(c_spec, NEW.parameters);
    END IF;
    IF r_spec IS NOT NULL AND NEW.rate_key IS NULL THEN
        NEW.rate_key := crust_render_key(r_spec, NEW.parameters);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_a_keys BEFORE INSERT ON jobs FOR EACH ROW
    EXECUTE FUNCTION crust_jobs_keys();

-- On every write of a keyed job: a job that ends, parks or is delayed
-- gives its slot up; one moved to another workflow or key loses it; a queued job without
-- a slot is unpublished and out of the scheduler's sight (until its start
-- time, if delayed) so that only a grant releases it.
CREATE FUNCTION crust_jobs_slot_rules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A delayed job holds no slot until its start time (moved later by
    -- hand, it gives its slot back).
    IF NEW.status NOT IN ('queued', 'running')
       OR (NEW.status = 'queued' AND NEW.start_at > now()) THEN
        NEW.holds_slot := false;
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.workflow_id <> OLD.workflow_id
                             OR NEW.concurrency_key IS DISTINCT FROM OLD.concurrency_key) THEN
        NEW.holds_slot := false;
    END IF;
    IF NEW.status = 'queued' AND NOT NEW.holds_slot THEN
        NEW.published_at := NULL;
        NEW.release_at := CASE WHEN NEW.start_at > now() THEN NEW.start_at ELSE 'infinity' END;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_b_slot_rules BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.concurrency_key IS NOT NULL)
    EXECUTE FUNCTION crust_jobs_slot_rules();

-- After a statement: grant the keys it freed a slot of or queued a slotless
-- job for, in lock order, so two statements granting several keys never
-- wait for each other in a cycle.
-- `crust.defer_grants = on` (a bulk create) leaves the grants to the caller,
-- which makes them at the end in the same order.
CREATE FUNCTION crust_jobs_grant_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    IF current_setting('crust.defer_grants', true) = 'on' THEN
        RETURN NULL;
    END IF;
    FOR r IN SELECT DISTINCT workflow_id, concurrency_key,
                    crust_slot_lock_id(workflow_id, concurrency_key) AS lock_id
             FROM new_rows WHERE concurrency_key IS NOT NULL AND status = 'queued'
             ORDER BY lock_id
    LOOP
        PERFORM crust_grant_slots(r.workflow_id, r.concurrency_key);
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_grant_after_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crust_jobs_grant_after_insert();

CREATE FUNCTION crust_jobs_grant_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r RECORD;
BEGIN
    -- Most statements touch no keyed job: leave before joining.
    IF NOT EXISTS (SELECT 1 FROM old_rows WHERE concurrency_key IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM new_rows WHERE concurrency_key IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    FOR r IN SELECT DISTINCT workflow_id, concurrency_key,
                    crust_slot_lock_id(workflow_id, concurrency_key) AS lock_id
             FROM (SELECT o.workflow_id, o.concurrency_key
                   FROM old_rows o JOIN new_rows n ON n.id = o.id
                   WHERE o.holds_slot AND NOT n.holds_slot
                   UNION ALL
                   SELECT n.workflow_id, n.concurrency_key
                   FROM old_rows o JOIN new_rows n ON n.id = o.id
                   WHERE n.concurrency_key IS NOT NULL AND n.status = 'queued'
                     AND NOT n.holds_slot
                     AND (o.status <> 'queued' OR o.workflow_id <> n.workflow_id
                          OR o.concurrency_key IS DISTINCT FROM n.concurrency_key)) touched
             ORDER BY lock_id
    LOOP
        PERFORM crust_grant_slots(r.workflow_id, r.concurrency_key);
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_grant_after_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crust_jobs_grant_after_update();
