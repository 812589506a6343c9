-- +goose Up
-- As on Postgres: the job counts by status and type read an index only.
CREATE INDEX jobs_open_status_type ON jobs (status, type)
    WHERE status IN ('pending', 'scheduled', 'processing');
CREATE INDEX jobs_finished_at ON jobs (completed_at, status, type)
    WHERE status IN ('completed', 'failed', 'cancelled');

-- +goose Down
DROP INDEX jobs_finished_at;
DROP INDEX jobs_open_status_type;
