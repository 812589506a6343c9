-- +goose Up
-- A child job's parent (carousel slides, per-network publishes).
ALTER TABLE jobs ADD COLUMN parent_id BIGINT REFERENCES jobs (id) ON DELETE CASCADE;
CREATE INDEX jobs_parent_id ON jobs (parent_id) WHERE parent_id IS NOT NULL;

-- +goose Down
DROP INDEX jobs_parent_id;
ALTER TABLE jobs DROP COLUMN parent_id;
