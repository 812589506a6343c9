package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// createdKey is POST /api/keys's answer.
type createdKey struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Prefix string   `json:"prefix"`
	Scopes []string `json:"scopes"`
	Key    string   `json:"key"`
}

// TestServiceKeyCreatesJobsForTwoUsers is the must-show: a
// service key creates jobs for two users; each user's JWT sees only their
// own; a revoked key is refused at once; the key never appears in logs or
// in any answer after its creation.
func TestServiceKeyCreatesJobsForTwoUsers(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b, withAdmin)
		admin := func(method, path, body string) *http.Response {
			r := request{method: method, path: path, auth: "Bearer " + testAdminToken}
			if body != "" {
				r.body = strings.NewReader(body)
			}
			return bb.do(t, r).Result()
		}
		newKey := func(name, scopes string) createdKey {
			resp := admin(http.MethodPost, "/api/keys", `{"name":"`+name+`","scopes":`+scopes+`}`)
			require.Equal(t, http.StatusCreated, resp.StatusCode)
			var k createdKey
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&k))
			require.True(t, strings.HasPrefix(k.Key, "jh_"), k.Key)
			require.Len(t, k.Key, 46)
			require.Equal(t, k.Key[:10], k.Prefix)
			return k
		}
		backend := newKey("backend", `["jobs:write","jobs:read"]`)
		require.Equal(t, []string{"jobs:read", "jobs:write"}, backend.Scopes, "in a stable order")
		reader := newKey("reports", `["jobs:read"]`)

		asKey := func(key, user, method, path, body string) *http.Response {
			r := request{method: method, path: path, auth: "Bearer " + key, headers: map[string]string{}}
			if user != "" {
				r.headers[handlers.HeaderActingUser] = user
			}
			if body != "" {
				r.body = strings.NewReader(body)
			}
			return bb.do(t, r).Result()
		}
		var ids = map[string]int64{}
		for _, user := range []string{"alice", "bob"} {
			resp := asKey(backend.Key, user, http.MethodPost, "/api/jobs", `{"type":"echo","payload":{"text":"for `+user+`"}}`)
			require.Equal(t, http.StatusCreated, resp.StatusCode)
			var out handlers.CreateJobResponse
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
			ids[user] = out.JobID
		}
		// Each user's own token sees only their job; the key reads each.
		for user, id := range ids {
			rec := bb.asUser(t, user, http.MethodGet, "/api/jobs", "")
			var page jobs.ListPage
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &page))
			require.Len(t, page.Jobs, 1, user)
			require.Equal(t, id, page.Jobs[0].ID)
			require.Equal(t, user, page.Jobs[0].UserID)
			resp := asKey(reader.Key, user, http.MethodGet, fmt.Sprintf("/api/jobs/%d", id), "")
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		require.Equal(t, http.StatusNotFound, asKey(backend.Key, "bob", http.MethodGet, fmt.Sprintf("/api/jobs/%d", ids["alice"]), "").StatusCode,
			"acting for bob, the key does not see alice's job")

		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + backend.Key}), http.StatusBadRequest, handlers.CodeUserRequired)
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + backend.Key, headers: map[string]string{handlers.HeaderActingUser: " alice"}}), http.StatusBadRequest, handlers.CodeInvalidUser)
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/jobs", auth: "Bearer " + reader.Key, headers: map[string]string{handlers.HeaderActingUser: "alice"}, body: strings.NewReader(`{"type":"echo"}`)}), http.StatusForbidden, handlers.CodeInsufficientScope)
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer jh_not-a-key-at-all", headers: map[string]string{handlers.HeaderActingUser: "alice"}}), http.StatusUnauthorized, handlers.CodeInvalidToken)
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/keys", auth: "Bearer " + backend.Key, headers: map[string]string{handlers.HeaderActingUser: "alice"}}), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.asUser(t, "alice", http.MethodPost, "/api/keys", `{"name":"x","scopes":["jobs:read"]}`), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/keys", auth: "Bearer " + testAdminToken, body: strings.NewReader(`{"name":"x","scopes":["jobs:delete"]}`)}), http.StatusBadRequest, handlers.CodeInvalidAPIKey)
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/keys", auth: "Bearer " + testAdminToken, body: strings.NewReader(`{"name":"","scopes":["jobs:read"]}`)}), http.StatusBadRequest, handlers.CodeInvalidAPIKey)
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/keys/999/revoke", auth: "Bearer " + testAdminToken}), http.StatusNotFound, handlers.CodeAPIKeyNotFound)

		// The list has the keys' names, prefixes and last use, never a key.
		resp := admin(http.MethodGet, "/api/keys", "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var list struct {
			Keys []map[string]any `json:"keys"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
		require.Len(t, list.Keys, 2)
		require.Equal(t, "backend", list.Keys[0]["name"])
		require.NotEmpty(t, list.Keys[0]["lastUsedAt"], "its use is noted")
		raw, _ := json.Marshal(list)
		require.NotContains(t, string(raw), backend.Key)
		require.NotContains(t, string(raw), reader.Key)

		// Revoked: refused at once.
		resp = admin(http.MethodPost, fmt.Sprintf("/api/keys/%d/revoke", backend.ID), "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		rec := bb.do(t, request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + backend.Key, headers: map[string]string{handlers.HeaderActingUser: "alice"}})
		body := requireError(t, rec, http.StatusUnauthorized, handlers.CodeInvalidToken)
		require.Contains(t, body.Error.Message, "revoked")

		logs := bb.logs.String()
		require.Contains(t, logs, fmt.Sprintf("api_key_id=%d", backend.ID), "the key's actions are recorded")
		require.Contains(t, logs, "acting_user=alice")
		require.NotContains(t, logs, backend.Key)
		require.NotContains(t, logs, reader.Key)
	})
}
