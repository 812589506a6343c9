package trigger_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/trigger"
	"github.com/jobhook/jobhook/models"
)

// fakeServer answers /api/workers and moves a job through the statuses
// given, one per worker call.
type fakeServer struct {
	mu       sync.Mutex
	calls    int
	statuses []models.Status
	job      models.Job
}

func (f *fakeServer) handler(secret string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"invalid_worker_auth","message":"the worker secret is wrong"}}`))
			return
		}
		f.mu.Lock()
		if f.calls < len(f.statuses) {
			f.job.Status = f.statuses[f.calls]
		}
		f.calls++
		f.mu.Unlock()
		_, _ = w.Write([]byte(`{"claimed":1,"completed":1}`))
	})
}

func (f *fakeServer) lookup(_ context.Context, id int64) (*models.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.job
	j.ID = id
	return &j, nil
}

func TestWaitsUntilCompleted(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusPending}, statuses: []models.Status{models.StatusPending, models.StatusCompleted}}
	srv := httptest.NewServer(f.handler("s3cret"))
	defer srv.Close()
	res, err := trigger.Run(context.Background(), trigger.Options{WorkerURL: srv.URL, WorkerSecret: "s3cret", WaitJobID: 7, Lookup: f.lookup, PollInterval: time.Millisecond})
	require.NoError(t, err)
	require.Equal(t, models.StatusCompleted, res.Job.Status)
	require.Len(t, res.Drains, 2, "called again while the job still waited")
}

func TestFailedJobIsAnError(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusPending, Error: "provider said no"}, statuses: []models.Status{models.StatusFailed}}
	srv := httptest.NewServer(f.handler("s3cret"))
	defer srv.Close()
	_, err := trigger.Run(context.Background(), trigger.Options{WorkerURL: srv.URL, WorkerSecret: "s3cret", WaitJobID: 7, Lookup: f.lookup, PollInterval: time.Millisecond})
	require.ErrorIs(t, err, trigger.ErrJobFailed)
	require.Contains(t, err.Error(), "provider said no")
}

func TestTimeout(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusScheduled}}
	srv := httptest.NewServer(f.handler("s3cret"))
	defer srv.Close()
	_, err := trigger.Run(context.Background(), trigger.Options{WorkerURL: srv.URL, WorkerSecret: "s3cret", WaitJobID: 7, Lookup: f.lookup, Timeout: 50 * time.Millisecond, PollInterval: time.Millisecond})
	require.True(t, errors.Is(err, context.DeadlineExceeded), "got %v", err)
	require.Contains(t, err.Error(), "still scheduled")
}

func TestRefusedCallSaysWhy(t *testing.T) {
	f := &fakeServer{}
	srv := httptest.NewServer(f.handler("s3cret"))
	defer srv.Close()
	_, err := trigger.Run(context.Background(), trigger.Options{WorkerURL: srv.URL, WorkerSecret: "wrong"})
	require.Error(t, err)
	require.Contains(t, err.Error(), "401 invalid_worker_auth")
}
