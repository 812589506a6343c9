-- +goose Up
-- As on Postgres: finished top-level jobs by age, for the retention pass.
CREATE INDEX jobs_finished_completed ON jobs (status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled') AND parent_id IS NULL;

-- +goose Down
DROP INDEX jobs_finished_completed;
