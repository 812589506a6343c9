-- +goose Up
-- One row per file a job wrote (a generated image), by the name its result
-- gives it. job_id is the job that holds the file: the one that wrote it,
-- or, once that one is deleted, a remaining job found naming it. A row
-- whose holder is gone (job_id NULL: released) is looked for in every job's
-- payload and result by the retention pass, over one lap of the jobs table:
-- marked at the lap's start, pinned to the first job found naming it, and
-- doomed at the lap's end if none did. The file of a doomed row is deleted
-- after that commit, and the row once the file is gone.
CREATE TABLE job_artifacts (
    name       TEXT        PRIMARY KEY,
    job_id     BIGINT      REFERENCES jobs (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL,
    marked     BOOLEAN     NOT NULL DEFAULT FALSE,
    doomed_at  TIMESTAMPTZ
);

-- The SET NULL of a job's delete finds its artifacts.
CREATE INDEX job_artifacts_job ON job_artifacts (job_id) WHERE job_id IS NOT NULL;
-- The released rows (marked at a lap's start), the marked ones (doomed at
-- its end), and the doomed ones (their files deleted).
CREATE INDEX job_artifacts_released ON job_artifacts (name) WHERE job_id IS NULL AND doomed_at IS NULL;
CREATE INDEX job_artifacts_marked ON job_artifacts (name) WHERE marked;
CREATE INDEX job_artifacts_doomed ON job_artifacts (doomed_at) WHERE doomed_at IS NOT NULL;

-- +goose Down
DROP TABLE job_artifacts;
