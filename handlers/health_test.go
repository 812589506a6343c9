package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
)

func TestHealthz(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	rec := bb.do(t, request{method: http.MethodGet, path: "/healthz"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"status":"ok"}`, rec.Body.String())
	require.NotEmpty(t, rec.Header().Get("X-Request-Id"))

	rec = bb.do(t, request{method: http.MethodHead, path: "/healthz"})
	require.Equal(t, http.StatusOK, rec.Code)
}

func TestReadyz(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		rec := bb.do(t, request{method: http.MethodGet, path: "/readyz"})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.JSONEq(t, `{"status":"ready","checks":{"database":"ok","redis":"ok"}}`, rec.Body.String())
	})
}

func TestReadyzRedisDown(t *testing.T) {
	b := testenv.Embedded(t)
	bb := setup(t, b)
	addr := b.Mini.Addr()
	b.Mini.Close()
	rec := bb.do(t, request{method: http.MethodGet, path: "/readyz"})
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	var body struct {
		Status string `json:"status"`
		Error  struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Checks map[string]string `json:"checks"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Empty(t, body.Status)
	require.Equal(t, "not_ready", body.Error.Code)
	require.Equal(t, map[string]string{"database": "ok", "redis": "error: unreachable"}, body.Checks)
	// The address of the Redis is only logged.
	require.NotContains(t, rec.Body.String(), addr)
	require.NotContains(t, rec.Body.String(), "127.0.0.1")
	require.Contains(t, bb.logs.String(), "readiness check failed")
}

func TestReadyzTimeout(t *testing.T) {
	bb := setup(t, testenv.Embedded(t), func(c *handlers.Config) {
		c.Ready = func(ctx context.Context) map[string]error {
			<-ctx.Done() // a check that hangs until the timeout
			return map[string]error{"database": nil, "redis": ctx.Err()}
		}
		c.ReadyTimeout = 1 // the shortest timeout there is
	})
	rec := bb.do(t, request{method: http.MethodGet, path: "/readyz"})
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `"redis":"error: timed out"`)
}

func TestHomePage(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	rec := bb.do(t, request{method: http.MethodGet, path: "/"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html"), rec.Header().Get("Content-Type"))
	body := rec.Body.String()
	for _, want := range []string{
		"<title>jobhook</title>",
		`<meta name="description" content="`,
		"<h1>jobhook is running</h1>",
		`href="/healthz"`,
		`href="https://github.com/jobhook/jobhook#readme"`,
	} {
		require.Contains(t, body, want)
	}
}

// TestBackendDown checks that a database failure is a 503 without
// details, and that the cause is logged.
func TestBackendDown(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		sqlDB, err := b.DB.Gorm.DB()
		require.NoError(t, err)
		require.NoError(t, sqlDB.Close())

		requireError(t, bb.asUser(t, "u1", http.MethodGet, "/api/jobs", ""), http.StatusServiceUnavailable, "service_unavailable")
		requireError(t, bb.asUser(t, "u1", http.MethodGet, "/api/jobs/1", ""), http.StatusServiceUnavailable, "service_unavailable")
		requireError(t, bb.asUser(t, "u1", http.MethodPost, "/api/jobs", `{"type":"noop"}`), http.StatusServiceUnavailable, "service_unavailable")
		require.Contains(t, bb.logs.String(), "request failed")
		require.Contains(t, bb.logs.String(), "database is closed")
	})
}

// failingVerifier cannot check tokens, as a JWKS verifier whose keys
// cannot be fetched.
type failingVerifier struct{}

func (failingVerifier) Verify(context.Context, string) (string, error) {
	return "", errBoom
}

func TestVerifierUnavailable(t *testing.T) {
	bb := setup(t, testenv.Embedded(t), func(c *handlers.Config) { c.Verifier = failingVerifier{} })
	requireError(t, bb.asUser(t, "u1", http.MethodGet, "/api/jobs", ""), http.StatusServiceUnavailable, "service_unavailable")
}

// TestRequestLog checks the one line per request: its fields, and that
// the token never reaches the log.
func TestRequestLog(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	tok := token(t, "u1")
	rec := bb.do(t, request{
		method: http.MethodPost, path: "/api/jobs", auth: "Bearer " + tok,
		body:    strings.NewReader(`{"type":"noop"}`),
		headers: map[string]string{"X-Request-Id": "req-123"},
	})
	require.Equal(t, http.StatusCreated, rec.Code)
	require.Equal(t, "req-123", rec.Header().Get("X-Request-Id"))
	bb.do(t, request{method: http.MethodGet, path: "/nope", auth: "Bearer " + tok})
	bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret})

	logs := bb.logs.String()
	require.Contains(t, logs, `msg=request component=http method=POST path=/api/jobs route=/api/jobs status=201`)
	require.Contains(t, logs, `request_id=req-123`)
	require.Contains(t, logs, `path=/nope`)
	require.Contains(t, logs, `status=404`)
	require.Contains(t, logs, `latency=`)
	require.NotContains(t, logs, tok)
	require.NotContains(t, logs, testWorkerSecret)
	require.NotContains(t, logs, "Bearer")
}

func TestConfigValidate(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	ok := handlers.Config{Service: bb.svc, Worker: bb.drainer, Verifier: failingVerifier{}, WorkerSecret: "s"}
	require.NoError(t, ok.Validate())
	for name, mutate := range map[string]func(*handlers.Config){
		"Service":      func(c *handlers.Config) { c.Service = nil },
		"Worker":       func(c *handlers.Config) { c.Worker = nil },
		"Verifier":     func(c *handlers.Config) { c.Verifier = nil },
		"WorkerSecret": func(c *handlers.Config) { c.WorkerSecret = "" },
		"DrainBudget":  func(c *handlers.Config) { c.DrainBudget = -1 },
		"BodyLimit":    func(c *handlers.Config) { c.BodyLimit = -1 },
	} {
		c := ok
		mutate(&c)
		err := c.Validate()
		require.ErrorContains(t, err, name, name)
		require.Panics(t, func() { handlers.New(c) }, name)
	}
	require.Equal(t, handlers.DefaultDrainBudget+15*time.Second, ok.WriteTimeout())
}
