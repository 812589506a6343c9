-- +goose Up
-- As on Postgres: one row per file a job wrote (a generated image), held
-- by a job until no remaining job names it, then deleted by the retention
-- pass.
CREATE TABLE job_artifacts (
    name       TEXT     PRIMARY KEY,
    job_id     INTEGER  REFERENCES jobs (id) ON DELETE SET NULL,
    created_at DATETIME NOT NULL,
    marked     BOOLEAN  NOT NULL DEFAULT FALSE,
    doomed_at  DATETIME
);

CREATE INDEX job_artifacts_job ON job_artifacts (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX job_artifacts_released ON job_artifacts (name) WHERE job_id IS NULL AND doomed_at IS NULL;
CREATE INDEX job_artifacts_marked ON job_artifacts (name) WHERE marked;
CREATE INDEX job_artifacts_doomed ON job_artifacts (doomed_at) WHERE doomed_at IS NOT NULL;

-- +goose Down
DROP TABLE job_artifacts;
