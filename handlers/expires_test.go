package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// TestCreateJobExpiresAt: expiresAt is taken as given when it is after
// now and after scheduledFor, defaults to the creation (or scheduledFor)
// plus 72 hours, and is shown with lostAttempts by GET and the list; a bad
// one is 400 invalid_expires_at, on both create routes.
func TestCreateJobExpiresAt(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		get := func(id int64) map[string]any {
			t.Helper()
			rec := bb.asUser(t, "u1", http.MethodGet, fmt.Sprintf("/api/jobs/%d", id), "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var job map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
			return job
		}
		timeOf := func(v any) time.Time {
			t.Helper()
			s, ok := v.(string)
			require.True(t, ok, "%v is not a string", v)
			at, err := time.Parse(time.RFC3339Nano, s)
			require.NoError(t, err)
			return at
		}

		def := get(bb.createJob(t, "u1", `{"type":"noop"}`, http.StatusCreated).JobID)
		require.Equal(t, timeOf(def["createdAt"]).Add(jobs.DefaultMaxWait), timeOf(def["expiresAt"]), "createdAt + 72h")
		require.Equal(t, float64(0), def["lostAttempts"], "shown even when 0")

		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		expires := at.Add(2 * time.Hour)
		body := fmt.Sprintf(`{"type":"noop","scheduledFor":%q,"expiresAt":%q}`, at.Format(time.RFC3339), expires.Format(time.RFC3339))
		own := get(bb.createJob(t, "u1", body, http.StatusCreated).JobID)
		require.True(t, expires.Equal(timeOf(own["expiresAt"])))
		sched := get(bb.createJob(t, "u1", fmt.Sprintf(`{"type":"noop","scheduledFor":%q}`, at.Format(time.RFC3339)), http.StatusCreated).JobID)
		require.True(t, at.Add(jobs.DefaultMaxWait).Equal(timeOf(sched["expiresAt"])), "scheduledFor + 72h")
		bb.createJob(t, "u1", `{"type":"noop","expiresAt":null}`, http.StatusCreated)

		rec := bb.asUser(t, "u1", http.MethodGet, "/api/jobs?limit=1", "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `"expiresAt":`)
		require.Contains(t, rec.Body.String(), `"lostAttempts":0`)

		rows := bb.counts(t).rows
		for name, body := range map[string]string{
			"past":            `{"type":"noop","expiresAt":"2001-02-03T04:05:06Z"}`,
			"before schedule": fmt.Sprintf(`{"type":"noop","scheduledFor":%q,"expiresAt":%q}`, at.Format(time.RFC3339), at.Add(-time.Minute).Format(time.RFC3339)),
			"at the schedule": fmt.Sprintf(`{"type":"noop","scheduledFor":%q,"expiresAt":%q}`, at.Format(time.RFC3339), at.Format(time.RFC3339)),
			"bad format":      `{"type":"noop","expiresAt":"tomorrow"}`,
			"not a string":    `{"type":"noop","expiresAt":1767225600}`,
			"out of range":    `{"type":"noop","expiresAt":"10000-01-01T00:00:00Z"}`,
		} {
			rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs", body)
			eb := requireError(t, rec, http.StatusBadRequest, handlers.CodeInvalidExpiresAt)
			require.Len(t, eb.Error.Fields, 1, name)
			require.Equal(t, "expiresAt", eb.Error.Fields[0].Field, name)
			require.Contains(t, eb.Error.Message, "expiresAt", name)

			rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(`{"type":"noop"}`, body))
			requireError(t, rec, http.StatusBadRequest, handlers.CodeInvalidBatch)
			require.Contains(t, rec.Body.String(), `"index":1,"code":"invalid_expires_at","field":"expiresAt"`, name)
		}
		require.Equal(t, rows, bb.counts(t).rows, "nothing stored")

		// A batch stores each job's expiry.
		rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(
			fmt.Sprintf(`{"type":"noop","expiresAt":%q}`, expires.Format(time.RFC3339)), `{"type":"noop"}`))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		var batch handlers.CreateJobsResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &batch))
		first, second := get(batch.Jobs[0].Job.JobID), get(batch.Jobs[1].Job.JobID)
		require.True(t, expires.Equal(timeOf(first["expiresAt"])))
		require.Equal(t, timeOf(second["createdAt"]).Add(jobs.DefaultMaxWait), timeOf(second["expiresAt"]))
	})
}
