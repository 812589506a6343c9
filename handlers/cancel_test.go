package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestCancelRunningJob: POST /api/jobs/:id/cancel on a running job
// answers 200 with the job cancelled, and the worker running it (another
// engine: another instance) stops its handler with jobs.ErrCancelled; a
// finished job is 409 job_not_cancellable naming its status; another
// user's running job is 404.
func TestCancelRunningJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		started, stopped := make(chan int64, 1), make(chan error, 1)
		bb.svc.Registry().MustRegister("wait", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			started <- job.ID
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
			}
			stopped <- context.Cause(ctx)
			return json.RawMessage(`{"late":true}`), nil
		}))
		w := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: bb.svc.Registry(),
			Logger: slog.New(slog.DiscardHandler), LeaseDuration: 900 * time.Millisecond}).Worker()

		resp := bb.createJob(t, "u1", `{"type":"wait"}`, http.StatusCreated)
		drained := make(chan jobs.DrainSummary, 1)
		go func() {
			sum, _ := w.Drain(context.Background(), time.Minute)
			drained <- sum
		}()
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the job did not start")
		}
		path := fmt.Sprintf("/api/jobs/%d/cancel", resp.JobID)
		requireError(t, bb.asUser(t, "u2", http.MethodPost, path, ""), http.StatusNotFound, "job_not_found")

		rec := bb.asUser(t, "u1", http.MethodPost, path, "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var job models.Job
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, models.StatusCancelled, job.Status)
		require.NotNil(t, job.CompletedAt)
		select {
		case cause := <-stopped:
			require.ErrorIs(t, cause, jobs.ErrCancelled)
		case <-time.After(10 * time.Second):
			t.Fatal("the handler did not stop")
		}
		select {
		case sum := <-drained:
			require.Equal(t, 1, sum.Skipped)
		case <-time.After(30 * time.Second):
			t.Fatal("the drain did not end")
		}
		rec = bb.asUser(t, "u1", http.MethodGet, fmt.Sprintf("/api/jobs/%d", resp.JobID), "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, models.StatusCancelled, job.Status, "the late outcome is dropped")
		require.Empty(t, job.Result)
		eb := requireError(t, bb.asUser(t, "u1", http.MethodPost, path, ""), http.StatusConflict, "job_not_cancellable")
		require.Contains(t, eb.Error.Message, "cancelled")

		done := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"hi"}}`, http.StatusCreated)
		_, err := w.Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		eb = requireError(t, bb.asUser(t, "u1", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", done.JobID), ""),
			http.StatusConflict, "job_not_cancellable")
		require.Contains(t, eb.Error.Message, "the job is completed")
	})
}
