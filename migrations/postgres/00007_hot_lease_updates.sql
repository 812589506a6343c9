-- +goose Up
-- Lease renewals (the heartbeat) and checkpoints become HOT updates: no
-- index holds lease_expires_at any more, and pages keep room for the new
-- row versions. The reaper's scan of the processing jobs, a small set,
-- uses the partial index on id.
DROP INDEX jobs_processing_lease;
CREATE INDEX jobs_processing ON jobs (id) WHERE status = 'processing';
ALTER TABLE jobs SET (fillfactor = 90);

-- +goose Down
ALTER TABLE jobs RESET (fillfactor);
DROP INDEX jobs_processing;
CREATE INDEX jobs_processing_lease ON jobs (lease_expires_at) WHERE status = 'processing';
