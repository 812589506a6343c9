-- +goose Up
-- Idempotency keys live in two spaces that never meet: a user's own keys
-- (jobs without a parent) and the keys jobhook gives a parent's children.
-- Before this, a user could create a job under a child's key and have a
-- later parent adopt it as its child.
DROP INDEX jobs_user_idempotency_key;
CREATE UNIQUE INDEX jobs_user_idempotency_key ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND parent_id IS NULL;
CREATE UNIQUE INDEX jobs_child_idempotency_key ON jobs (parent_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND parent_id IS NOT NULL;

-- +goose Down
DROP INDEX jobs_child_idempotency_key;
DROP INDEX jobs_user_idempotency_key;
CREATE UNIQUE INDEX jobs_user_idempotency_key ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
