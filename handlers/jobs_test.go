package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

func TestCreateJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		ctx := context.Background()

		rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs",
			`{"type":"echo","payload":{"text":"hello","n":1.5,"emoji":"\ud83d\ude00"},"priority":999999,"maxAttempts":25}`)
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		var created struct {
			JobID  int64  `json:"jobId"`
			Status string `json:"status"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &created))
		require.Equal(t, "pending", created.Status)
		require.Equal(t, fmt.Sprintf("/api/jobs/%d", created.JobID), rec.Header().Get("Location"))

		var job models.Job
		require.NoError(t, b.DB.Gorm.Take(&job, created.JobID).Error)
		require.Equal(t, "u1", job.UserID)
		require.Equal(t, "echo", job.Type)
		require.Equal(t, 999999, job.Priority)
		require.Equal(t, 25, job.MaxAttempts)
		require.JSONEq(t, `{"text":"hello","n":1.5,"emoji":"😀"}`, string(job.Payload))
		d, err := bb.eng.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, int64(1), d.Pending)

		// Defaults: priority 0, maxAttempts 3, and a type without a payload
		// validator takes an absent payload as {}.
		def := bb.createJob(t, "u1", `{"type":"noop"}`, http.StatusCreated)
		var defJob models.Job
		require.NoError(t, b.DB.Gorm.Take(&defJob, def.JobID).Error)
		require.Equal(t, 0, defJob.Priority)
		require.Equal(t, models.DefaultMaxAttempts, defJob.MaxAttempts)
		require.JSONEq(t, `{}`, string(defJob.Payload))

		// Whitespace around the body and null scheduledFor are fine.
		bb.createJob(t, "u1", "\n {\"type\":\"noop\",\"scheduledFor\":null} \n", http.StatusCreated)
	})
}

func TestCreateScheduledJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		resp := bb.createJob(t, "u1", `{"type":"noop","scheduledFor":"`+at.Format(time.RFC3339)+`"}`, http.StatusCreated)
		require.Equal(t, models.StatusScheduled, resp.Status)
		c := bb.counts(t)
		require.Equal(t, int64(0), c.queue.Pending, "a scheduled job is not enqueued")

		// Any RFC 3339 offset; a time in the past runs now.
		past := bb.createJob(t, "u1", `{"type":"noop","scheduledFor":"2001-02-03T04:05:06.789+02:00"}`, http.StatusCreated)
		require.Equal(t, models.StatusPending, past.Status)

		rec := bb.asUser(t, "u1", http.MethodGet, fmt.Sprintf("/api/jobs/%d", resp.JobID), "")
		require.Equal(t, http.StatusOK, rec.Code)
		var job models.Job
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.NotNil(t, job.ScheduledFor)
		require.True(t, job.ScheduledFor.Equal(at), "scheduledFor %v, want %v", job.ScheduledFor, at)
	})
}

func TestCreateJobIdempotencyKey(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		post := func(user, key, text string) (int, int64) {
			t.Helper()
			rec := bb.do(t, request{
				method: http.MethodPost, path: "/api/jobs",
				body:    strings.NewReader(`{"type":"echo","payload":{"text":"` + text + `"}}`),
				auth:    "Bearer " + token(t, user),
				headers: map[string]string{"Idempotency-Key": key},
			})
			var resp struct {
				JobID  int64  `json:"jobId"`
				Status string `json:"status"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp), rec.Body.String())
			require.Equal(t, "pending", resp.Status)
			return rec.Code, resp.JobID
		}
		code, first := post("u1", "order-42", "one")
		require.Equal(t, http.StatusCreated, code)
		code, again := post("u1", "order-42", "two")
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, first, again)
		require.Equal(t, int64(1), bb.counts(t).rows)
		require.Equal(t, int64(1), bb.counts(t).queue.Pending)

		// The key is per user.
		code, other := post("u2", "order-42", "three")
		require.Equal(t, http.StatusCreated, code)
		require.NotEqual(t, first, other)
		require.Equal(t, int64(2), bb.counts(t).rows)
	})
}

func TestGetJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		resp := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"hi"},"priority":7}`, http.StatusCreated)
		path := fmt.Sprintf("/api/jobs/%d", resp.JobID)

		rec := bb.asUser(t, "u1", http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var job map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, float64(resp.JobID), job["id"], "the bare job object")
		require.Equal(t, "u1", job["userId"])
		require.Equal(t, "echo", job["type"])
		require.Equal(t, "pending", job["status"])
		require.Equal(t, float64(7), job["priority"])
		require.Equal(t, map[string]any{"text": "hi"}, job["payload"])

		// Someone else's job does not exist for them.
		rec = bb.asUser(t, "u2", http.MethodGet, path, "")
		requireError(t, rec, http.StatusNotFound, "job_not_found")
	})
}

func TestCancelJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		resp := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"hi"}}`, http.StatusCreated)
		path := fmt.Sprintf("/api/jobs/%d/cancel", resp.JobID)

		requireError(t, bb.asUser(t, "u2", http.MethodPost, path, ""), http.StatusNotFound, "job_not_found")

		rec := bb.asUser(t, "u1", http.MethodPost, path, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var job models.Job
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, resp.JobID, job.ID)
		require.Equal(t, models.StatusCancelled, job.Status)
		require.Equal(t, int64(0), bb.counts(t).queue.Pending, "the cancelled job left the queue")

		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, ""), http.StatusConflict, "job_not_cancellable")

		// A scheduled job can be cancelled too.
		sched := bb.createJob(t, "u1", `{"type":"noop","scheduledFor":"2099-01-01T00:00:00Z"}`, http.StatusCreated)
		rec = bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", sched.JobID), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	})
}

type listPage struct {
	Jobs       []models.Job `json:"jobs"`
	NextCursor string       `json:"nextCursor"`
}

func (bb *bundle) list(t *testing.T, user string, query url.Values) listPage {
	t.Helper()
	rec := bb.asUser(t, user, http.MethodGet, "/api/jobs?"+query.Encode(), "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &top))
	require.Contains(t, top, "jobs")
	var page listPage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &page))
	return page
}

func TestListJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		// 25 jobs of u1: every fifth is "noop", every seventh cancelled;
		// and 3 of u2 that u1 must never see.
		var ids []int64
		cancelled := map[int64]bool{}
		noop := map[int64]bool{}
		for i := range 25 {
			body := `{"type":"echo","payload":{"text":"x"}}`
			if i%5 == 0 {
				body = `{"type":"noop"}`
			}
			id := bb.createJob(t, "u1", body, http.StatusCreated).JobID
			ids = append(ids, id)
			noop[id] = i%5 == 0
			if i%7 == 0 {
				rec := bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", id), "")
				require.Equal(t, http.StatusOK, rec.Code)
				cancelled[id] = true
			}
		}
		for range 3 {
			bb.createJob(t, "u2", `{"type":"noop"}`, http.StatusCreated)
		}

		// Pages of 10, newest first, no overlap, no gap.
		var got []int64
		cursor := ""
		pages := 0
		for {
			q := url.Values{"limit": {"10"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			page := bb.list(t, "u1", q)
			pages++
			for _, j := range page.Jobs {
				require.Equal(t, "u1", j.UserID)
				got = append(got, j.ID)
			}
			if page.NextCursor == "" {
				break
			}
			require.Len(t, page.Jobs, 10)
			cursor = page.NextCursor
			require.LessOrEqual(t, pages, 3, "too many pages")
		}
		require.Equal(t, 3, pages)
		want := make([]int64, len(ids))
		for i, id := range ids {
			want[len(ids)-1-i] = id
		}
		require.Equal(t, want, got)

		// Default page size 20.
		page := bb.list(t, "u1", nil)
		require.Len(t, page.Jobs, 20)
		require.NotEmpty(t, page.NextCursor)

		// Filters.
		page = bb.list(t, "u1", url.Values{"status": {"cancelled"}, "limit": {"100"}})
		require.Len(t, page.Jobs, len(cancelled))
		for _, j := range page.Jobs {
			require.True(t, cancelled[j.ID])
			require.Equal(t, models.StatusCancelled, j.Status)
		}
		page = bb.list(t, "u1", url.Values{"type": {"noop"}, "status": {"pending"}, "limit": {"100"}})
		wantN := 0
		for _, id := range ids {
			if noop[id] && !cancelled[id] {
				wantN++
			}
		}
		require.Len(t, page.Jobs, wantN)
		for _, j := range page.Jobs {
			require.Equal(t, "noop", j.Type)
			require.Equal(t, models.StatusPending, j.Status)
		}
		page = bb.list(t, "u1", url.Values{"type": {"unknown"}})
		require.Empty(t, page.Jobs)
		require.NotNil(t, page.Jobs)
		require.Empty(t, page.NextCursor)

		// Another user sees only their own.
		require.Len(t, bb.list(t, "u2", nil).Jobs, 3)
		require.Empty(t, bb.list(t, "nobody", nil).Jobs)
	})
}

func TestRescheduleJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		job := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"x"},"scheduledFor":"`+future+`"}`, http.StatusCreated)
		require.EqualValues(t, "scheduled", job.Status)
		path := fmt.Sprintf("/api/jobs/%d/reschedule", job.JobID)

		later := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
		rec := bb.asUser(t, "u1", http.MethodPost, path, `{"scheduledFor":"`+later.Format(time.RFC3339)+`"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var got struct {
			Status       string    `json:"status"`
			ScheduledFor time.Time `json:"scheduledFor"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		require.Equal(t, "scheduled", got.Status)
		require.True(t, later.Equal(got.ScheduledFor))

		requireError(t, bb.asUser(t, "u2", http.MethodPost, path, `{"scheduledFor":"`+future+`"}`), http.StatusNotFound, "job_not_found")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, `{"scheduledFor":"tomorrow"}`), http.StatusBadRequest, "invalid_scheduled_for")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, `{}`), http.StatusBadRequest, "invalid_scheduled_for")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, `[`), http.StatusBadRequest, "invalid_json")

		// Now: it becomes pending and is enqueued.
		rec = bb.asUser(t, "u1", http.MethodPost, path, `{"scheduledFor":"`+time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)+`"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		require.Equal(t, "pending", got.Status)
		require.EqualValues(t, 1, bb.counts(t).queue.Pending)

		bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", job.JobID), "")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, path, `{"scheduledFor":"`+future+`"}`), http.StatusConflict, "job_not_reschedulable")
	})
}
