-- +goose Up
-- One row per irreversible step of a job (jobs.Effect): its intent is
-- recorded before the step runs (status 'intent', the attempt and the time),
-- the provider's id after it (status 'done'). A later attempt of the job
-- reads it: done is not redone; an intent without an id is checked with the
-- provider before anything is redone. The rows go with their job.
CREATE TABLE job_effects (
    job_id      BIGINT      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    status      TEXT        NOT NULL CHECK (status IN ('intent', 'done')),
    provider_id TEXT,
    attempt     INTEGER     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, name, key)
);

-- A check reads the ids other jobs recorded for the same step lately, so as
-- not to adopt another job's post.
CREATE INDEX job_effects_name_updated ON job_effects (name, updated_at);

-- +goose Down
DROP TABLE job_effects;
