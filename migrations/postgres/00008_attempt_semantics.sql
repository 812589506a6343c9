-- +goose Up
-- lost_attempts counts the attempts in a row whose worker was lost (its
-- lease expired): they do not consume max_attempts, and a job lost too many
-- times in a row fails. expires_at bounds a job's waits (a provider's
-- RetryAfter, a snooze): a wait that would run it later fails it instead.
-- The history gains two outcomes: deferred (the attempt asked to run again
-- later, without counting) and cancelled (the job was cancelled while it
-- ran).
ALTER TABLE jobs ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'released', 'deferred', 'cancelled'));

-- +goose Down
DELETE FROM job_attempts WHERE outcome IN ('deferred', 'cancelled');
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_outcome_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_outcome_check
    CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'released'));
ALTER TABLE jobs DROP COLUMN expires_at;
ALTER TABLE jobs DROP COLUMN lost_attempts;
