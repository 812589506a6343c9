-- +goose Up
-- The QStash delayed message that delivers a scheduled job at its time.
ALTER TABLE jobs ADD COLUMN qstash_message_id TEXT;

-- +goose Down
ALTER TABLE jobs DROP COLUMN qstash_message_id;
