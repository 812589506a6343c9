-- +goose Up
-- The retention pass finds finished top-level jobs by age: oldest first,
-- in small batches (their children and attempts go with them).
CREATE INDEX jobs_finished_completed ON jobs (status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled') AND parent_id IS NULL;

-- +goose Down
DROP INDEX jobs_finished_completed;
