-- +goose Up
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt     INTEGER  NOT NULL,
    started_at  DATETIME,
    finished_at DATETIME NOT NULL,
    outcome     TEXT     NOT NULL CHECK (outcome IN ('completed', 'retried', 'failed', 'lost', 'released')),
    error       TEXT     NOT NULL DEFAULT '',
    created_at  DATETIME NOT NULL
);

CREATE INDEX job_attempts_job_attempt ON job_attempts (job_id, attempt);

-- +goose Down
DROP TABLE job_attempts;
