-- +goose Up
-- As on Postgres: the W3C traceparent of the create that made the job.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN trace_parent;
