-- +goose Up
-- trace_parent is the W3C traceparent of the create that made the job
-- (empty when tracing was off): each attempt's span is its child, so one
-- trace shows the create, the delivery, the attempts and their provider
-- calls.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE jobs DROP COLUMN trace_parent;
