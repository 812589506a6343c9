-- +goose Up
-- As on Postgres: the job's flow keys, space-separated.
ALTER TABLE jobs ADD COLUMN flow_keys TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN flow_keys;
