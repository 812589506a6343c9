package handlers_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// TestJobStatsAndBulkRetryOverHTTP: GET /api/jobs/stats counts the
// caller's jobs, POST /api/jobs/retry retries the failed ones the filters
// match, and every bad filter is a 400 with its own code.
func TestJobStatsAndBulkRetryOverHTTP(t *testing.T) {
	const admin = "an-operator-token-of-at-least-32-bytes"
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b, func(c *handlers.Config) { c.AdminToken = admin })
		asAdmin := func(method, path string) *http.Response {
			rec := bb.do(t, request{method: method, path: path, auth: "Bearer " + admin})
			return rec.Result()
		}
		a := bb.createJob(t, "alice", `{"type":"echo","payload":{"text":"a"}}`, http.StatusCreated)
		b1 := bb.createJob(t, "bob", `{"type":"echo","payload":{"text":"b"}}`, http.StatusCreated)
		bb.createJob(t, "bob", `{"type":"echo","payload":{"text":"c"}}`, http.StatusCreated)
		bb.failJob(t, a.JobID, "timeout talking to the provider")
		bb.failJob(t, b1.JobID, "bad request")

		rec := bb.asUser(t, "bob", http.MethodGet, "/api/jobs/stats?since=1h", "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var st struct {
			jobs.Stats
			SinceSeconds int64 `json:"sinceSeconds"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
		require.EqualValues(t, 3600, st.SinceSeconds)
		require.Equal(t, []jobs.StatusTypeCount{{Status: "pending", Type: "echo", Count: 1}, {Status: "failed", Type: "echo", Count: 1}}, st.Counts)
		require.Len(t, st.Minutes, jobs.StatsMinutes)
		require.EqualValues(t, 1, st.Minutes[len(st.Minutes)-1].Failed)

		for _, c := range []struct{ path, code string }{
			{"/api/jobs/stats?since=1s", handlers.CodeInvalidSince},
			{"/api/jobs/stats?since=forever", handlers.CodeInvalidSince},
			{"/api/jobs?parent=0", handlers.CodeInvalidParent},
			{"/api/jobs?parent=1x", handlers.CodeInvalidParent},
			{"/api/jobs?createdFrom=yesterday", handlers.CodeInvalidTimeRange},
			{"/api/jobs?createdFrom=2026-12-02T10:00:00Z&createdTo=2026-12-02T09:00:00Z", handlers.CodeInvalidTimeRange},
			{"/api/jobs?error=%01", handlers.CodeInvalidFilter},
			{"/api/jobs?user=%01", handlers.CodeInvalidFilter},
		} {
			requireError(t, bb.asUser(t, "bob", http.MethodGet, c.path, ""), http.StatusBadRequest, c.code)
		}
		requireError(t, bb.asUser(t, "bob", http.MethodGet, "/api/jobs?user=alice", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.asUser(t, "bob", http.MethodPost, "/api/jobs/retry?status=pending", ""), http.StatusBadRequest, handlers.CodeInvalidStatus)

		// The operator lists alice's failed jobs by their error text, then
		// retries the failed jobs with that text: exactly alice's.
		resp := asAdmin(http.MethodGet, "/api/jobs?user=alice&error=TIMEOUT")
		var page jobs.ListPage
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
		require.Len(t, page.Jobs, 1)
		require.Equal(t, a.JobID, page.Jobs[0].ID)
		resp = asAdmin(http.MethodPost, "/api/jobs/retry?error=timeout")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out jobs.BulkRetry
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		require.Equal(t, jobs.BulkRetry{Retried: []int64{a.JobID}, Failed: []jobs.RetryFailure{}}, out)

		// bob retries his own failed job; alice's are not his to see.
		rec = bb.asUser(t, "bob", http.MethodPost, "/api/jobs/retry", "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
		require.Equal(t, []int64{b1.JobID}, out.Retried)
	})
}
