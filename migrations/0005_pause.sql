-- Flow control: a paused workflow's jobs stay queued and are not started,
-- and its cron slots are skipped; NULL = running normally.
ALTER TABLE workflows ADD COLUMN paused_at TIMESTAMPTZ;
