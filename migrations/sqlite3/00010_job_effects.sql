-- +goose Up
-- As on Postgres: one row per irreversible step of a job (jobs.Effect),
-- removed with its job.
CREATE TABLE job_effects (
    job_id      INTEGER  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT     NOT NULL,
    key         TEXT     NOT NULL,
    status      TEXT     NOT NULL CHECK (status IN ('intent', 'done')),
    provider_id TEXT,
    attempt     INTEGER  NOT NULL,
    created_at  DATETIME NOT NULL,
    updated_at  DATETIME NOT NULL,
    PRIMARY KEY (job_id, name, key)
);

CREATE INDEX job_effects_name_updated ON job_effects (name, updated_at);

-- +goose Down
DROP TABLE job_effects;
