package handlers_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// TestWorkerJobRead: GET /api/workers/jobs/:id answers the worker secret
// with any user's job and its history, as the user API shows it; it
// refuses every other credential as POST /api/workers does.
func TestWorkerJobRead(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		created := bb.createJob(t, "alice", `{"type":"echo","payload":{"text":"hello"}}`, http.StatusCreated)
		path := fmt.Sprintf("/api/workers/jobs/%d", created.JobID)

		rec := bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer " + testWorkerSecret})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var got handlers.JobResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
		require.Equal(t, created.JobID, got.ID)
		require.Equal(t, "alice", got.UserID)
		require.Equal(t, "pending", string(got.Status))
		require.NotNil(t, got.History)
		user := bb.asUser(t, "alice", http.MethodGet, fmt.Sprintf("/api/jobs/%d", created.JobID), "")
		require.JSONEq(t, user.Body.String(), rec.Body.String(), "the same view as the owner's")

		requireError(t, bb.do(t, request{method: http.MethodGet, path: path}), http.StatusUnauthorized, "missing_worker_auth")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer wrong"}), http.StatusUnauthorized, "invalid_worker_auth")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer " + token(t, "alice")}), http.StatusUnauthorized, "invalid_worker_auth")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: path, auth: "Basic " + testWorkerSecret}), http.StatusUnauthorized, "invalid_worker_auth")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/workers/jobs/999999", auth: "Bearer " + testWorkerSecret}), http.StatusNotFound, "job_not_found")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/workers/jobs/-3", auth: "Bearer " + testWorkerSecret}), http.StatusBadRequest, "invalid_job_id")
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/workers/jobs/-3"}), http.StatusUnauthorized, "missing_worker_auth")
		require.Empty(t, bb.drainer.Calls(), "a read never drains")
	})
}

// TestWorkerJobReadRedactsSecrets: secret payload fields read as
// "[redacted]" here too.
func TestWorkerJobReadRedactsSecrets(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		const secret = "EAAB-worker-read-secret-token"
		key, err := secretbox.GenerateKey()
		require.NoError(t, err)
		ring, err := secretbox.ParseKeyring(key)
		require.NoError(t, err)
		reg := jobs.NewRegistry()
		reg.MustRegister("vault", vaultHandler{seen: make(chan string, 1)})
		eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Secrets: ring, DisableTriggers: true})
		svc := eng.Service()
		bb := &bundle{b: b, eng: eng, svc: svc, drainer: &fakeDrainer{}, logs: &syncBuffer{}}
		bb.app = handlers.New(handlers.Config{Service: svc, Worker: bb.drainer, Verifier: auth.NewHS256Verifier([]byte(testJWTSecret)), WorkerSecret: testWorkerSecret})
		created := bb.createJob(t, "owner", `{"type":"vault","payload":{"accessToken":"`+secret+`"}}`, http.StatusCreated)
		rec := bb.do(t, request{method: http.MethodGet, path: fmt.Sprintf("/api/workers/jobs/%d", created.JobID), auth: "Bearer " + testWorkerSecret})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.NotContains(t, rec.Body.String(), secret)
		require.Contains(t, rec.Body.String(), "[redacted]")
	})
}

// TestWorkerJobReadFailuresAreLimited: wrong secrets on the read count as
// failed worker authentications; the right one is not refused for them.
func TestWorkerJobReadFailuresAreLimited(t *testing.T) {
	b := testenv.Embedded(t)
	limiter := ratelimit.New(b.Redis, b.Prefix+"ratelimit:", nil)
	bb := setup(t, b, func(cfg *handlers.Config) {
		cfg.WorkerAuthLimit = testAuthLimit{limiter, ratelimit.Failures{Limit: 2, Window: time.Minute}}
	})
	created := bb.createJob(t, "alice", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
	path := fmt.Sprintf("/api/workers/jobs/%d", created.JobID)
	for i := 0; i < 2; i++ {
		requireError(t, bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer guess-" + fmt.Sprint(i)}), http.StatusUnauthorized, "invalid_worker_auth")
	}
	rec := bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer guess-again"})
	requireError(t, rec, http.StatusTooManyRequests, "too_many_auth_failures")
	require.NotEmpty(t, rec.Header().Get("Retry-After"))
	rec = bb.do(t, request{method: http.MethodGet, path: path, auth: "Bearer " + testWorkerSecret})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.True(t, strings.Contains(rec.Body.String(), `"userId":"alice"`), rec.Body.String())
}
