-- +goose Up
-- flow_keys names, space-separated, the external accounts and resources a
-- job's work counts against (ig:<account>, fb:<page>, openai:<key>:<model>,
-- host:<name>), computed from the payload when the job is created. The
-- queue enforces each key's limits at claim time; the reconciler reads the
-- keys back from here when it restores a job to the queue.
ALTER TABLE jobs ADD COLUMN flow_keys TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN flow_keys;
