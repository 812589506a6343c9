package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

func TestWorkerAuth(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"queued"}}`, http.StatusCreated)
		before := bb.counts(t)
		require.Equal(t, int64(1), before.queue.Pending)

		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers"}), http.StatusUnauthorized, "missing_worker_auth")
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer nope"}), http.StatusUnauthorized, "invalid_worker_auth")
		require.Equal(t, before, bb.counts(t), "a refused call touched the queue")
		require.Empty(t, bb.drainer.Calls())

		// The right secret runs a drain and answers with its summary; a
		// body (QStash sends one) is read and ignored; the scheme is
		// case-insensitive.
		// The drainer here is a fake that records its calls;
		// TestWorkerDrainRunsQueuedJobs drives the real jobs.Worker.
		rec := bb.do(t, request{
			method: http.MethodPost, path: "/api/workers",
			auth: "bearer " + testWorkerSecret,
			body: strings.NewReader(`{"sourceMessageId":"msg_1"}`),
		})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		want, err := json.Marshal(bb.drainer.Summary)
		require.NoError(t, err)
		require.JSONEq(t, string(want), rec.Body.String(), "the summary as the worker returned it")
		var summary map[string]any
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &summary))
		for _, key := range []string{"claimed", "completed", "retried", "failed", "remaining"} {
			require.Contains(t, summary, key)
		}
		calls := bb.drainer.Calls()
		require.Len(t, calls, 1)
		require.Equal(t, 30*time.Second, calls[0].budget, "the configured budget")
	})
}

func TestWorkerBudgetAndContext(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	call := func(query string, ctx context.Context) *drainCall {
		t.Helper()
		rec := bb.do(t, request{method: http.MethodPost, path: "/api/workers" + query, auth: "Bearer " + testWorkerSecret, ctx: ctx})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		calls := bb.drainer.Calls()
		return &calls[len(calls)-1]
	}
	require.Equal(t, 10*time.Second, call("?budget=10s", nil).budget)
	require.Equal(t, 1500*time.Millisecond, call("?budget=1.5s", nil).budget)
	require.Equal(t, 30*time.Second, call("?budget=5m", nil).budget, "capped at the configured budget")

	// A client that already hung up does not cancel the drain.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := call("", ctx)
	require.NoError(t, c.ctxErr)
	require.False(t, c.cancellable, "the drain's context must not be cancellable by the client")
}

func TestWorkerDrainErrors(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	post := func() *httptest.ResponseRecorder {
		return bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret})
	}

	bb.drainer.Err = fmt.Errorf("drain: claim: %w: %w", jobs.ErrUnavailable, errBoom)
	sum := requireDrainUnavailable(t, post())
	require.Equal(t, bb.drainer.Summary, sum, "the summary of what the drain did comes with the error")

	bb.drainer.Err = errBoom
	requireError(t, post(), http.StatusInternalServerError, "internal_error")
	require.Contains(t, bb.logs.String(), "boom: secret internals", "the cause is logged")

	bb.drainer.Err = nil
	bb.drainer.Panic = true
	requireError(t, post(), http.StatusInternalServerError, "internal_error")
	require.Contains(t, bb.logs.String(), "panic while serving a request")
}

// TestWorkerAuthSeam checks that extra WorkerAuthFuncs (the QStash
// signature check to come) are tried before the bearer secret.
func TestWorkerAuthSeam(t *testing.T) {
	signature := func(r *http.Request, body []byte) error {
		sig := r.Header.Get("Upstash-Signature")
		switch {
		case sig == "":
			return handlers.ErrNoCredentials
		case sig == "good:"+string(body):
			return nil
		case sig == "broken":
			return errors.New("signature check failed: secret internals")
		default:
			return &handlers.APIError{Status: http.StatusUnauthorized, Code: "invalid_signature", Message: "bad signature"}
		}
	}
	bb := setup(t, testenv.Embedded(t), func(c *handlers.Config) {
		c.WorkerAuth = []handlers.WorkerAuthFunc{signature}
	})
	send := func(auth, sig, body string) *httptest.ResponseRecorder {
		r := request{method: http.MethodPost, path: "/api/workers", auth: auth, body: strings.NewReader(body)}
		if sig != "" {
			r.headers = map[string]string{"Upstash-Signature": sig}
		}
		return bb.do(t, r)
	}
	require.Equal(t, http.StatusOK, send("", "good:{}", "{}").Code)
	require.Equal(t, http.StatusOK, send("Bearer wrong", "good:{}", "{}").Code, "any accepted credential is enough")
	require.Equal(t, http.StatusOK, send("Bearer "+testWorkerSecret, "bad", "{}").Code)
	requireError(t, send("", "bad", "{}"), http.StatusUnauthorized, "invalid_signature")
	requireError(t, send("", "good:other", "{}"), http.StatusUnauthorized, "invalid_signature")
	requireError(t, send("", "broken", "{}"), http.StatusUnauthorized, "invalid_worker_auth")
	requireError(t, send("", "", "{}"), http.StatusUnauthorized, "missing_worker_auth")
	require.Len(t, bb.drainer.Calls(), 3)

	// Without WorkerSecret only the signature lets in.
	bb = setup(t, testenv.Embedded(t), func(c *handlers.Config) {
		c.WorkerSecret = ""
		c.WorkerAuth = []handlers.WorkerAuthFunc{signature}
	})
	requireError(t, send("Bearer "+testWorkerSecret, "", "{}"), http.StatusUnauthorized, "missing_worker_auth")
}

// TestWorkerDrainRunsQueuedJobs drives the real jobs.Worker through POST
// /api/workers: the queued jobs complete and the summary says so.
func TestWorkerDrainRunsQueuedJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		var worker *jobs.Worker
		bb := setup(t, b, func(cfg *handlers.Config) {
			worker = realWorker(t, b, cfg)
			cfg.Worker = worker
		})
		first := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"one"}}`, http.StatusCreated)
		bb.createJob(t, "u2", `{"type":"echo","payload":{"text":"two"},"priority":5}`, http.StatusCreated)

		rec := bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var sum jobs.DrainSummary
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &sum))
		require.Equal(t, 2, sum.Claimed)
		require.Equal(t, 2, sum.Completed)
		require.Zero(t, sum.Remaining)

		got := bb.asUser(t, "u1", http.MethodGet, fmt.Sprintf("/api/jobs/%d", first.JobID), "")
		require.Equal(t, http.StatusOK, got.Code)
		var job struct {
			Status string          `json:"status"`
			Result json.RawMessage `json:"result"`
		}
		require.NoError(t, json.Unmarshal(got.Body.Bytes(), &job))
		require.Equal(t, "completed", job.Status)
		require.JSONEq(t, `{"text":"one"}`, string(job.Result))
	})
}
