-- +goose Up
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'scheduled', 'processing', 'completed', 'failed', 'cancelled')),
    priority        INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 999999),
    payload         TEXT    NOT NULL DEFAULT '{}',
    result          TEXT,
    error           TEXT    NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 25),
    scheduled_for   DATETIME,
    next_run_at     DATETIME NOT NULL,
    started_at      DATETIME,
    completed_at    DATETIME,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    idempotency_key TEXT
);

CREATE UNIQUE INDEX jobs_user_idempotency_key ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_user_id ON jobs (user_id, id DESC);
CREATE INDEX jobs_user_status_id ON jobs (user_id, status, id DESC);
CREATE INDEX jobs_open_next_run ON jobs (status, next_run_at) WHERE status IN ('pending', 'scheduled');

-- +goose Down
DROP TABLE jobs;
