-- +goose Up
-- As on Postgres: lost_attempts, expires_at, and the deferred and
-- cancelled outcomes (SQLite cannot alter a CHECK: the history table is
-- rebuilt).
ALTER TABLE jobs ADD COLUMN lost_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN expires_at DATETIME;
CREATE TABLE job_attempts_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER  NOT NULL,
    started_at  DATETIME,
    finished_at DATETIME NOT NULL,
    outcome     TEXT     NOT NULL CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'released', 'deferred', 'cancelled')),
    error       TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL
);
INSERT INTO job_attempts_new SELECT id, job_id, attempt, started_at, finished_at, outcome, error, created_at FROM job_attempts;
DROP TABLE job_attempts;
ALTER TABLE job_attempts_new RENAME TO job_attempts;
CREATE INDEX job_attempts_job_attempt ON job_attempts (job_id, attempt);

-- +goose Down
CREATE TABLE job_attempts_old (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER  NOT NULL,
    started_at  DATETIME,
    finished_at DATETIME NOT NULL,
    outcome     TEXT     NOT NULL CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'released')),
    error       TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL
);
INSERT INTO job_attempts_old SELECT id, job_id, attempt, started_at, finished_at, outcome, error, created_at FROM job_attempts
    WHERE outcome NOT IN ('deferred', 'cancelled');
DROP TABLE job_attempts;
ALTER TABLE job_attempts_old RENAME TO job_attempts;
CREATE INDEX job_attempts_job_attempt ON job_attempts (job_id, attempt);
ALTER TABLE jobs DROP COLUMN expires_at;
ALTER TABLE jobs DROP COLUMN lost_attempts;
