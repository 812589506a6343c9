package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/internal/testenv"
)

// TestAPIKeysCreateListRevoke: create prints the key alone on stdout, and
// the key creates a job for the user it names; list shows the key's use
// but never the key; after revoke the key is refused.
func TestAPIKeysCreateListRevoke(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		code, out, errOut := runCmd(t, "apikeys", "create", "--name", "backend", "--scopes", "jobs:write, jobs:read")
		require.Equal(t, 0, code, errOut)
		key := strings.TrimSpace(out)
		require.True(t, strings.HasPrefix(key, "jh_"), out)
		require.Regexp(t, `^created API key 1 "backend" \(jh_\S{7}\), scopes jobs:read,jobs:write; it is shown only now:`, errOut)

		create := func() int {
			req, err := http.NewRequest(http.MethodPost, s.url+"/api/jobs", strings.NewReader(`{"type":"ok"}`))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("X-Jobhook-User", "alice")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		require.Equal(t, http.StatusCreated, create())

		code, out, errOut = runCmd(t, "apikeys", "list")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 2, out)
		require.Regexp(t, `^ID +NAME +PREFIX +SCOPES +CREATED +LAST USED +REVOKED$`, lines[0])
		require.Regexp(t, `^1 +backend +jh_\S{7} +jobs:read,jobs:write +20\d\d-\S+ \S+ +20\d\d-\S+ \S+ +-$`, lines[1])
		require.NotContains(t, out, key)

		code, out, errOut = runCmd(t, "apikeys", "revoke", "1")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, `revoked API key 1 "backend"`)
		require.Equal(t, http.StatusUnauthorized, create(), "refused at once")

		code, out, _ = runCmd(t, "apikeys", "list", "--json")
		require.Equal(t, 0, code)
		var keys []client.APIKey
		require.NoError(t, json.Unmarshal([]byte(out), &keys))
		require.Len(t, keys, 1)
		require.NotNil(t, keys[0].RevokedAt)

		code, _, errOut = runCmd(t, "apikeys", "create", "--name", "x", "--scopes", "jobs:delete")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "400 invalid_api_key")
		code, _, errOut = runCmd(t, "apikeys", "create", "--name", "x")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, "--scopes is needed")
		code, _, errOut = runCmd(t, "apikeys", "revoke", "abc")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, "a key id is a positive integer")
		code, _, errOut = runCmd(t, "apikeys", "revoke", "42")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "404 api_key_not_found")
	})
}
