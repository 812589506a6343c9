package client

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// APIKey is a service key as the server lists it: never the key itself.
type APIKey struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"createdAt"`
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
}

// CreatedAPIKey is a new service key with the key itself, which the
// server shows only this once.
type CreatedAPIKey struct {
	APIKey
	Key string `json:"key"`
}

// CreateAPIKey issues a service key named name with scopes
// ("jobs:read", "jobs:write") (POST /api/keys). Operator only.
func (c *JobsClient) CreateAPIKey(ctx context.Context, name string, scopes []string) (CreatedAPIKey, error) {
	var k CreatedAPIKey
	err := c.post(ctx, c.base+"/api/keys", map[string]any{"name": name, "scopes": scopes}, &k)
	return k, err
}

// APIKeys lists every service key, revoked ones included (GET /api/keys).
// Operator only.
func (c *JobsClient) APIKeys(ctx context.Context) ([]APIKey, error) {
	var out struct {
		Keys []APIKey `json:"keys"`
	}
	err := c.call(ctx, http.MethodGet, c.base+"/api/keys", &out)
	return out.Keys, err
}

// RevokeAPIKey revokes a service key at once (POST /api/keys/:id/revoke).
// Operator only.
func (c *JobsClient) RevokeAPIKey(ctx context.Context, id int64) (APIKey, error) {
	var k APIKey
	err := c.call(ctx, http.MethodPost, c.base+"/api/keys/"+strconv.FormatInt(id, 10)+"/revoke", &k)
	return k, err
}
