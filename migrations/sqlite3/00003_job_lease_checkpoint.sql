-- +goose Up
ALTER TABLE jobs ADD COLUMN lease_expires_at DATETIME;
ALTER TABLE jobs ADD COLUMN lease_id TEXT;
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
CREATE INDEX jobs_processing_lease ON jobs (lease_expires_at) WHERE status = 'processing';

-- +goose Down
DROP INDEX jobs_processing_lease;
ALTER TABLE jobs DROP COLUMN checkpoint;
ALTER TABLE jobs DROP COLUMN lease_id;
ALTER TABLE jobs DROP COLUMN lease_expires_at;
