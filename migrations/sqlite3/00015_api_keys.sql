-- +goose Up
-- As on Postgres: service credentials, kept as SHA-256 hashes.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT     NOT NULL,
    prefix       TEXT     NOT NULL,
    hash         TEXT     NOT NULL UNIQUE,
    scopes       TEXT     NOT NULL,
    created_at   DATETIME NOT NULL,
    last_used_at DATETIME,
    revoked_at   DATETIME
);

-- +goose Down
DROP TABLE api_keys;
