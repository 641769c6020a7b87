-- Idempotency keys: `POST /job/` with a `key` (or an `Idempotency-Key`
-- header) returns the job created earlier with the same workflow and key,
-- as long as that job is younger than CRUST_JOB_KEY_TTL.
--
-- The unique index is what makes concurrent creates safe: the second insert
-- of a key waits for the first one's transaction and then conflicts
-- (`ON CONFLICT ... DO NOTHING`), so it reads and returns the first job.
-- A key past its TTL is reused by clearing it on the old job (set to NULL,
-- in the same transaction as the new insert): the index then holds at most
-- one live job per key, and the old job keeps everything but its key.
ALTER TABLE jobs ADD COLUMN idempotency_key TEXT
    CHECK (length(idempotency_key) BETWEEN 1 AND 255);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
