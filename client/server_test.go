package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const jwtSecret = "client-test-jwt-secret"

// adminToken is the test server's ADMIN_TOKEN: its caller is the operator.
const adminToken = "client-test-admin-token-of-32-bytes-or-more"

// server is a real jobhook HTTP layer and engine on one backend, counting
// the worker calls it gets.
type server struct {
	url         string
	workerCalls atomic.Int64
}

// startServer serves the handlers with the real Service and Worker. Job
// type "ok" completes with {"done":true}; "refused" always fails with a
// retryable error, so its job waits out a backoff after each attempt.
func startServer(t *testing.T, b testenv.Backend) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := jobs.NewRegistry()
	reg.MustRegister("ok", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		return json.RawMessage(`{"done":true}`), nil
	}))
	reg.MustRegister("refused", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		return nil, errors.New("dial tcp 127.0.0.1:1: connection refused")
	}))
	eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log})
	app := handlers.New(handlers.Config{Service: eng.Service(), Worker: eng.Worker(), Verifier: auth.NewHS256Verifier([]byte(jwtSecret)), WorkerSecret: secret, AdminToken: adminToken, Logger: log})
	s := &server{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/workers" {
			s.workerCalls.Add(1)
		}
		app.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// create posts a job for user alice and returns its id.
func (s *server) create(t *testing.T, body string) int64 {
	t.Helper()
	tok, err := auth.MintHS256([]byte(jwtSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.url+"/api/jobs", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
	var created struct {
		JobID int64 `json:"jobId"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&created))
	return created.JobID
}

// TestTriggerAgainstAServer: TriggerWorker against a real server, with
// nothing but its URL and worker secret: it reads the job over HTTP.
func TestTriggerAgainstAServer(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startServer(t, b)
		id := s.create(t, `{"type":"ok","payload":{}}`)
		res, err := client.TriggerWorker(context.Background(), client.Options{URL: s.url, WorkerSecret: secret, WaitForJobID: id, PollInterval: 20 * time.Millisecond, Timeout: 30 * time.Second})
		require.NoError(t, err)
		require.True(t, res.Success)
		require.Equal(t, fmt.Sprintf("job %d completed", id), res.Message)
		require.JSONEq(t, `{"done":true}`, string(res.Result))
		require.Equal(t, "alice", res.Job.UserID)
		require.Len(t, res.Job.History, 1)

		_, err = client.TriggerWorker(context.Background(), client.Options{URL: s.url, WorkerSecret: secret, WaitForJobID: id + 1000})
		require.ErrorIs(t, err, client.ErrJobNotFound)
		require.Equal(t, fmt.Sprintf("job %d was not found", id+1000), err.Error())
	})
}

// TestNoBusyLoopAgainstAServer is the repro: a job whose fetch is
// refused fails its first attempt and waits out a backoff of several
// seconds; while it waits, TriggerWorker makes no further worker call
// (the seed's made about 3,000 in 5 s).
func TestNoBusyLoopAgainstAServer(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startServer(t, b)
		id := s.create(t, `{"type":"refused","payload":{},"maxAttempts":3}`)
		res, err := client.TriggerWorker(context.Background(), client.Options{URL: s.url, WorkerSecret: secret, WaitForJobID: id, PollInterval: 10 * time.Millisecond, Timeout: 1500 * time.Millisecond})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, fmt.Sprintf("job %d still pending after 1.5s (timed out)", id), err.Error())
		require.Equal(t, int64(1), s.workerCalls.Load(), "one worker call; none during the backoff")
		require.Equal(t, 1, res.Job.Attempts)
		require.Contains(t, res.Job.Error, "connection refused")
		require.True(t, res.Job.NextRunAt.After(time.Now()), "still in its backoff")
	})
}
