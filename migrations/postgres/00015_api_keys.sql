-- +goose Up
-- Service credentials (jobhook apikeys): the app backend's bearer keys
-- "jh_…". Only the SHA-256 of a key is kept (a key is 32 random bytes, so
-- a fast hash is enough); prefix is the key's first characters, shown in
-- lists to tell keys apart. A revoked key stays, for the record.
CREATE TABLE api_keys (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT        NOT NULL,
    prefix       TEXT        NOT NULL,
    hash         TEXT        NOT NULL UNIQUE,
    scopes       TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

-- +goose Down
DROP TABLE api_keys;
