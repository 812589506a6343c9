package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// failJob marks a job failed for good, as the worker would after its last
// attempt.
func (bb *bundle) failJob(t *testing.T, id int64, msg string) {
	t.Helper()
	require.NoError(t, bb.b.Redis.ZRem(t.Context(), bb.b.Prefix+"pending", id).Err())
	now := time.Now().UTC()
	require.NoError(t, bb.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).Updates(map[string]any{
		"status": models.StatusFailed, "attempts": 3, "error": msg, "started_at": now, "completed_at": now, "updated_at": now,
	}).Error)
}

func TestRetryJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		resp := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"hi"},"maxAttempts":3}`, http.StatusCreated)
		path := fmt.Sprintf("/api/jobs/%d/retry", resp.JobID)

		// Pending: not retryable.
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, ""), http.StatusConflict, "job_not_retryable")

		bb.failJob(t, resp.JobID, "provider said no")
		require.Zero(t, bb.counts(t).queue.Pending)

		// Bad ids, no token, another user's job, no such job.
		requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs/abc/retry", ""), http.StatusBadRequest, "invalid_job_id")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs/0/retry", ""), http.StatusBadRequest, "invalid_job_id")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs/-1/retry", ""), http.StatusBadRequest, "invalid_job_id")
		requireError(t, bb.do(t, request{method: http.MethodPost, path: path}), http.StatusUnauthorized, "missing_token")
		requireError(t, bb.asUser(t, "u2", http.MethodPost, path, ""), http.StatusNotFound, "job_not_found")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/retry", resp.JobID+1000), ""),
			http.StatusNotFound, "job_not_found")
		requireError(t, bb.asUser(t, "u1", http.MethodGet, path, ""), http.StatusMethodNotAllowed, "method_not_allowed")
		var row models.Job
		require.NoError(t, b.DB.Gorm.Take(&row, resp.JobID).Error)
		require.Equal(t, models.StatusFailed, row.Status, "refused retries change nothing")

		// The owner's retry: 200, the bare job, pending with a fresh budget.
		rec := bb.asUser(t, "u1", http.MethodPost, path, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var job map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, float64(resp.JobID), job["id"])
		require.Equal(t, "pending", job["status"])
		require.Equal(t, float64(0), job["attempts"])
		require.Equal(t, float64(3), job["maxAttempts"])
		require.NotContains(t, job, "error")
		require.NotContains(t, job, "completedAt")
		require.NotContains(t, job, "history", "only GET /api/jobs/:id carries the history")
		require.EqualValues(t, 1, bb.counts(t).queue.Pending, "enqueued again")

		// Now pending: a second retry is a conflict.
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, ""), http.StatusConflict, "job_not_retryable")

		// A completed job is not retryable either.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", resp.JobID).
			Update("status", models.StatusCompleted).Error)
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, ""), http.StatusConflict, "job_not_retryable")

		// A cancelled job is: it runs again from a fresh start.
		other := bb.createJob(t, "u1", `{"type":"noop"}`, http.StatusCreated)
		require.Equal(t, http.StatusOK, bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", other.JobID), "").Code)
		rec = bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/retry", other.JobID), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var again map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &again))
		require.Equal(t, "pending", again["status"])
		require.NotContains(t, again, "completedAt")
	})
}

func TestGetJobHistory(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		resp := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"hi"}}`, http.StatusCreated)
		path := fmt.Sprintf("/api/jobs/%d", resp.JobID)

		type historyBody struct {
			ID      int64  `json:"id"`
			Status  string `json:"status"`
			History []struct {
				Attempt    int        `json:"attempt"`
				StartedAt  *time.Time `json:"startedAt"`
				FinishedAt time.Time  `json:"finishedAt"`
				Outcome    string     `json:"outcome"`
				Error      string     `json:"error"`
			} `json:"history"`
		}
		get := func(user string) (historyBody, map[string]json.RawMessage) {
			t.Helper()
			rec := bb.asUser(t, user, http.MethodGet, path, "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var hb historyBody
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &hb))
			var top map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &top))
			return hb, top
		}

		// Before any attempt: an empty list, never null.
		hb, top := get("u1")
		require.Equal(t, resp.JobID, hb.ID, "the bare job object")
		require.JSONEq(t, `[]`, string(top["history"]))
		require.Contains(t, top, "attempts", "the attempt counter keeps its name")

		// Two attempts, a retry, and the third attempt numbered 1 again;
		// one attempt of another job that must not show.
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		other := bb.createJob(t, "u1", `{"type":"noop"}`, http.StatusCreated)
		rows := []models.JobAttempt{
			{JobID: resp.JobID, Attempt: 1, Outcome: "retried", Error: "503 upstream"},
			{JobID: resp.JobID, Attempt: 2, Outcome: "failed", Error: "503 upstream"},
			{JobID: other.JobID, Attempt: 1, Outcome: "completed"},
			{JobID: resp.JobID, Attempt: 1, Outcome: "completed"},
		}
		for i := range rows {
			start := t0.Add(time.Duration(i) * time.Minute)
			rows[i].StartedAt = &start
			rows[i].FinishedAt = start.Add(2 * time.Second)
			rows[i].CreatedAt = rows[i].FinishedAt
			require.NoError(t, b.DB.Gorm.Create(&rows[i]).Error)
		}
		lost := models.JobAttempt{JobID: resp.JobID, Attempt: 2, Outcome: "lost", Error: "lease expired: worker lost",
			FinishedAt: t0.Add(time.Hour), CreatedAt: t0.Add(time.Hour)}
		require.NoError(t, b.DB.Gorm.Create(&lost).Error)

		hb, top = get("u1")
		require.Len(t, hb.History, 4)
		var seq []string
		for _, h := range hb.History {
			seq = append(seq, fmt.Sprintf("%d:%s", h.Attempt, h.Outcome))
		}
		require.Equal(t, []string{"1:retried", "2:failed", "1:completed", "2:lost"}, seq, "in the order they happened")
		first := hb.History[0]
		require.NotNil(t, first.StartedAt)
		require.True(t, first.StartedAt.Equal(t0))
		require.True(t, first.FinishedAt.Equal(t0.Add(2*time.Second)))
		require.Equal(t, "503 upstream", first.Error)
		require.Nil(t, hb.History[3].StartedAt, "an unknown start is left out")

		var entries []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(top["history"], &entries))
		require.NotContains(t, entries[2], "error", "no error, no key")
		for _, e := range entries {
			for _, hidden := range []string{"id", "jobId", "createdAt"} {
				require.NotContains(t, e, hidden)
			}
		}

		// Another user sees no job and no history.
		requireError(t, bb.asUser(t, "u2", http.MethodGet, path, ""), http.StatusNotFound, "job_not_found")

		// Lists carry no history.
		page := bb.asUser(t, "u1", http.MethodGet, "/api/jobs", "")
		require.Equal(t, http.StatusOK, page.Code)
		require.NotContains(t, page.Body.String(), `"history"`)
	})
}

func TestListFailedJobsThenRetry(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		var failed []int64
		for i := range 7 {
			id := bb.createJob(t, "u1", `{"type":"noop"}`, http.StatusCreated).JobID
			if i%3 == 0 {
				bb.failJob(t, id, fmt.Sprintf("failure %d", i))
				failed = append([]int64{id}, failed...) // newest first
			}
		}
		theirs := bb.createJob(t, "u2", `{"type":"noop"}`, http.StatusCreated).JobID
		bb.failJob(t, theirs, "not yours")

		ids := func() []int64 {
			t.Helper()
			var out []int64
			for _, j := range bb.list(t, "u1", url.Values{"status": {"failed"}}).Jobs {
				require.Equal(t, models.StatusFailed, j.Status)
				require.Equal(t, "u1", j.UserID)
				require.NotEmpty(t, j.Error)
				out = append(out, j.ID)
			}
			return out
		}
		require.Equal(t, failed, ids())

		rec := bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/retry", failed[1]), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, []int64{failed[0], failed[2]}, ids(), "a retried job leaves the failed list")
	})
}
