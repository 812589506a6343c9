-- +goose Up
-- The same index as on Postgres, where it lets lease renewals be HOT
-- updates: the reaper scans the processing jobs by id.
DROP INDEX jobs_processing_lease;
CREATE INDEX jobs_processing ON jobs (id) WHERE status = 'processing';

-- +goose Down
DROP INDEX jobs_processing;
CREATE INDEX jobs_processing_lease ON jobs (lease_expires_at) WHERE status = 'processing';
