package handlers_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
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
	// Hold SQLite's only connection so every query waits for it.
	sqlDB, err := b.DB.Gorm.DB()
	require.NoError(t, err)
	conn, err := sqlDB.Conn(context.Background())
	require.NoError(t, err)
	defer conn.Close()
	bb := setup(t, b, func(cfg *handlers.Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	start := time.Now()
	rec := bb.asUser(t, "u1", http.MethodGet, "/api/jobs", "")
	requireError(t, rec, http.StatusServiceUnavailable, "service_unavailable")
	require.Less(t, time.Since(start), 5*time.Second)
}
