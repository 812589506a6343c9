package handlers_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

// While the database is down the API answers 503 service_unavailable with
// no internals, never 500 and never a hang.
func TestDatabaseOutageIs503(t *testing.T) {
	b := testenv.Embedded(t)
	bb := setup(t, b)
	created := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
	sqlDB, err := b.DB.Gorm.DB()
	require.NoError(t, err)
	require.NoError(t, sqlDB.Close())

	for _, r := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/jobs", `{"type":"echo","payload":{"text":"y"}}`},
		{http.MethodGet, "/api/jobs", ""},
		{http.MethodGet, fmt.Sprintf("/api/jobs/%d", created.JobID), ""},
		{http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", created.JobID), ""},
	} {
		rec := bb.asUser(t, "u1", r.method, r.path, r.body)
		body := requireError(t, rec, http.StatusServiceUnavailable, "service_unavailable")
		require.NotContains(t, body.Error.Message, "sql", "%s %s leaked internals", r.method, r.path)
	}
	rec := bb.do(t, request{method: http.MethodGet, path: "/readyz"})
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, rec.Body.String(), `"database":"error`)
}

// A backend that hangs is cut off at the request timeout with 503.
func TestHangingBackendIsCutOffAtTheRequestTimeout(t *testing.T) {
	b := testenv.Embedded(t)
	bb := setup(t, b, func(cfg *handlers.Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	// Hold SQLite's only connection so every query waits for it (after
	// setup: the engine's Start reads the database).
	sqlDB, err := b.DB.Gorm.DB()
	require.NoError(t, err)
	conn, err := sqlDB.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	start := time.Now()
	rec := bb.asUser(t, "u1", http.MethodGet, "/api/jobs", "")
	requireError(t, rec, http.StatusServiceUnavailable, "service_unavailable")
	require.Less(t, time.Since(start), 5*time.Second)
}

// closedAddr returns an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// While Redis cannot be reached, POST /api/workers answers 503
// backend_unavailable with the drain's summary, not 500; a wrong secret is
// still 401 (the failure limiter's outage lets the refusal through).
func TestWorkerRedisOutageIs503(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		dead := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
		t.Cleanup(func() { _ = dead.Close() })
		limiter := ratelimit.New(dead, b.Prefix+"ratelimit:", nil)
		bb := setup(t, b, func(cfg *handlers.Config) {
			// Not started: Start restores the queue, which needs Redis.
			eng, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: dead, RedisPrefix: b.Prefix, Registry: cfg.Service.Registry(), Logger: cfg.Logger})
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, eng.Shutdown(context.Background())) })
			cfg.Worker = eng.Worker()
			cfg.WorkerAuthLimit = testAuthLimit{limiter, ratelimit.Failures{Limit: 1, Window: time.Minute}}
		})
		rec := bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret})
		requireDrainUnavailable(t, rec)
		require.Contains(t, bb.logs.String(), "connection refused", "the cause is logged")
		for range 2 {
			requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer wrong"}), http.StatusUnauthorized, "invalid_worker_auth")
		}
	})
}

// The embedded Redis stopped under a running server: the same 503.
func TestWorkerClosedMiniredisIs503(t *testing.T) {
	b := testenv.Embedded(t)
	bb := setup(t, b, func(cfg *handlers.Config) {
		cfg.Worker = realWorker(t, b, cfg)
	})
	b.Mini.Close()
	requireDrainUnavailable(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret}))
}
