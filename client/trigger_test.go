package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const secret = "s3cret-worker"

// fakeServer answers POST /api/workers and GET /api/workers/jobs/7 like a
// jobhook server holding one job; onCall changes the job on each worker
// call.
type fakeServer struct {
	mu        sync.Mutex
	job       models.Job
	calls     []time.Time
	reads     int
	onCall    func(n int, job *models.Job)
	unknownID bool
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+secret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":{"code":"invalid_worker_auth","message":"the worker secret is wrong"}}`))
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/workers":
		f.calls = append(f.calls, time.Now())
		if f.onCall != nil {
			f.onCall(len(f.calls), &f.job)
		}
		_, _ = w.Write([]byte(`{"claimed":1,"completed":1,"remaining":0}`))
	case r.Method == http.MethodGet && r.URL.Path == "/api/workers/jobs/7" && !f.unknownID:
		f.reads++
		_ = json.NewEncoder(w).Encode(client.Job{Job: f.job, History: []models.JobAttempt{}})
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/workers/jobs/"):
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"job_not_found","message":"job not found"}}`))
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"not found"}}`))
	}
}

func (f *fakeServer) workerCalls() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls...)
}

func serve(t *testing.T, f *fakeServer) string {
	t.Helper()
	if f.job.ID == 0 {
		f.job.ID = 7
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestNoBusyLoopDuringBackoff: while the job waits out a retry backoff,
// TriggerWorker reads it but does not call the worker again (the seed's
// trigger called it back to back, about 3,000 times in 5 s).
func TestNoBusyLoopDuringBackoff(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusPending, NextRunAt: time.Now().Add(time.Hour), Attempts: 1, Error: "connection refused"}}
	url := serve(t, f)
	start := time.Now()
	res, err := client.TriggerWorker(context.Background(), client.Options{
		URL: url, WorkerSecret: secret, WaitForJobID: 7, Timeout: 500 * time.Millisecond, PollInterval: 5 * time.Millisecond,
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, "job 7 still pending after 500ms (timed out)", err.Error())
	require.Equal(t, err.Error(), res.Message)
	require.False(t, res.Success)
	require.Equal(t, 1, len(f.workerCalls()), "one call, then none until the backoff ends")
	require.Less(t, time.Since(start), 5*time.Second)
	f.mu.Lock()
	require.Greater(t, f.reads, 2, "the job is still read every poll interval")
	f.mu.Unlock()
}

// TestCallsAgainWhenTheBackoffEnds: the next call comes at the job's next
// run time, not before, and the job then completes.
func TestCallsAgainWhenTheBackoffEnds(t *testing.T) {
	nextRun := time.Now().Add(300 * time.Millisecond)
	f := &fakeServer{job: models.Job{Status: models.StatusPending}}
	f.onCall = func(n int, job *models.Job) {
		switch n {
		case 1: // the first attempt fails: retry after a backoff
			job.Attempts, job.NextRunAt = 1, nextRun
		default:
			job.Status, job.Result = models.StatusCompleted, models.JSON(`{"title":"ok"}`)
		}
	}
	url := serve(t, f)
	res, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: secret, WaitForJobID: 7, PollInterval: 10 * time.Millisecond, Timeout: 10 * time.Second})
	require.NoError(t, err)
	require.True(t, res.Success)
	require.Equal(t, "job 7 completed", res.Message)
	require.JSONEq(t, `{"title":"ok"}`, string(res.Result))
	require.Equal(t, int64(7), res.JobID)
	calls := f.workerCalls()
	require.Equal(t, 2, len(calls))
	require.False(t, calls[1].Before(nextRun), "called again only once the backoff ended")
	require.Len(t, res.Drains, 2)
	require.Equal(t, 1, res.Drains[0].Claimed)
}

// TestPollIntervalBetweenCalls: a job that stays due is called for at
// most once per poll interval.
func TestPollIntervalBetweenCalls(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusPending}}
	url := serve(t, f)
	_, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: secret, WaitForJobID: 7, PollInterval: 100 * time.Millisecond, Timeout: 550 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	calls := f.workerCalls()
	require.GreaterOrEqual(t, len(calls), 2)
	require.LessOrEqual(t, len(calls), 6)
	for i := 1; i < len(calls); i++ {
		require.GreaterOrEqual(t, calls[i].Sub(calls[i-1]), 100*time.Millisecond)
	}
}

// TestRunningJobIsNotCalledFor: while the job runs under a lease, only
// reads happen.
func TestRunningJobIsNotCalledFor(t *testing.T) {
	lease := time.Now().Add(time.Hour)
	f := &fakeServer{job: models.Job{Status: models.StatusProcessing, LeaseExpiresAt: &lease}}
	url := serve(t, f)
	_, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: secret, WaitForJobID: 7, PollInterval: 5 * time.Millisecond, Timeout: 200 * time.Millisecond})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "still processing")
	require.Equal(t, 1, len(f.workerCalls()))
}

func TestFailedJobIsAnError(t *testing.T) {
	f := &fakeServer{job: models.Job{Status: models.StatusPending}}
	f.onCall = func(_ int, job *models.Job) { job.Status, job.Error = models.StatusFailed, "provider said no" }
	url := serve(t, f)
	res, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: secret, WaitForJobID: 7, PollInterval: time.Millisecond})
	require.ErrorIs(t, err, client.ErrJobFailed)
	require.Equal(t, "job 7 failed: provider said no", err.Error())
	require.Equal(t, err.Error(), res.Message)
	require.False(t, res.Success)
	require.Equal(t, models.StatusFailed, res.Job.Status)
}

// TestMissingJobIsNamed: a job the server does not have is said plainly,
// and no drain is started for it.
func TestMissingJobIsNamed(t *testing.T) {
	f := &fakeServer{unknownID: true}
	url := serve(t, f)
	_, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: secret, WaitForJobID: 999})
	require.ErrorIs(t, err, client.ErrJobNotFound)
	require.Equal(t, "job 999 was not found", err.Error())
	require.Empty(t, f.workerCalls())
}

func TestRefusedCallSaysWhy(t *testing.T) {
	url := serve(t, &fakeServer{})
	res, err := client.TriggerWorker(context.Background(), client.Options{URL: url, WorkerSecret: "wrong"})
	var ae *client.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, http.StatusUnauthorized, ae.Status)
	require.Equal(t, "invalid_worker_auth", ae.Code)
	require.Contains(t, err.Error(), "401 invalid_worker_auth: the worker secret is wrong")
	require.Equal(t, err.Error(), res.Message)
}

func TestOneCallWithoutWaiting(t *testing.T) {
	f := &fakeServer{}
	url := serve(t, f)
	res, err := client.TriggerWorker(context.Background(), client.Options{URL: url + "/", WorkerSecret: secret})
	require.NoError(t, err)
	require.True(t, res.Success)
	require.Equal(t, "the worker ran: claimed 1, completed 1, retried 0, failed 0, remaining 0", res.Message)
	require.Equal(t, 1, len(f.workerCalls()))
}

func TestOptionsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		o    client.Options
		want string
	}{
		{client.Options{WorkerSecret: secret}, "the server's URL is required"},
		{client.Options{URL: "localhost:8080", WorkerSecret: secret}, `"localhost:8080" is not an absolute http(s) URL`},
		{client.Options{URL: "http://localhost:1"}, "the worker secret is required"},
		{client.Options{URL: "http://localhost:1", WorkerSecret: secret, WaitForJobID: -3}, "must be positive, not -3"},
		{client.Options{URL: "http://localhost:1", WorkerSecret: secret, Timeout: -time.Second}, "the timeout must be positive"},
	} {
		_, err := client.TriggerWorker(context.Background(), tc.o)
		require.ErrorContains(t, err, tc.want)
	}
}

// TestDrainSummaryMatchesTheServer: the client's DrainSummary has the JSON
// fields of the server's jobs.DrainSummary.
func TestDrainSummaryMatchesTheServer(t *testing.T) {
	fields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := 0; i < rt.NumField(); i++ {
			out = append(out, fmt.Sprintf("%s %s", rt.Field(i).Tag.Get("json"), rt.Field(i).Type))
		}
		sort.Strings(out)
		return out
	}
	require.Equal(t, fields(jobs.DrainSummary{}), fields(client.DrainSummary{}))
}

// TestTimeoutDuringACall: a worker call that outlasts Timeout ends with the
// timeout, naming the job's last status.
func TestTimeoutDuringACall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte(`{"id":7,"status":"pending"}`))
	}))
	defer srv.Close()
	defer close(release)
	_, err := client.TriggerWorker(context.Background(), client.Options{URL: srv.URL, WorkerSecret: secret, WaitForJobID: 7, Timeout: 100 * time.Millisecond})
	require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	require.Equal(t, "job 7 still pending after 100ms (timed out)", err.Error())
}
