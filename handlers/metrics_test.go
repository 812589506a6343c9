package handlers_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/metrics"
	"github.com/jobhook/jobhook/internal/testenv"
)

const testMetricsToken = "handlers-test-metrics-token-0123456789"

// withMetrics serves m at /metrics behind token (none: open) and counts
// the requests in m.
func withMetrics(m *metrics.Metrics, token string) setupOption {
	return func(c *handlers.Config) {
		c.Metrics, c.MetricsToken, c.ObserveRequest = m.Handler(), token, m.ObserveRequest
	}
}

func TestMetricsEndpointAuth(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		t.Run("no metrics handler: 404", func(t *testing.T) {
			bb := setup(t, b)
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics"}), http.StatusNotFound, handlers.CodeNotFound)
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics", auth: "Bearer " + testMetricsToken}), http.StatusNotFound, handlers.CodeNotFound)
		})
		t.Run("token", func(t *testing.T) {
			bb := setup(t, b, withMetrics(metrics.New(), testMetricsToken))
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics"}), http.StatusUnauthorized, handlers.CodeMissingToken)
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics", auth: "Bearer " + testMetricsToken + "x"}), http.StatusUnauthorized, handlers.CodeInvalidToken)
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics", auth: "Basic " + testMetricsToken}), http.StatusUnauthorized, handlers.CodeInvalidToken)
			// Another credential of the API is not the metrics token.
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/metrics", auth: "Bearer " + testWorkerSecret}), http.StatusUnauthorized, handlers.CodeInvalidToken)
			rec := bb.do(t, request{method: http.MethodGet, path: "/metrics", auth: "Bearer " + testMetricsToken})
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), "go_goroutines")
		})
		t.Run("open without a token", func(t *testing.T) {
			bb := setup(t, b, withMetrics(metrics.New(), ""))
			rec := bb.do(t, request{method: http.MethodGet, path: "/metrics"})
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		})
	})
}

// TestRequestMetricsByRoute checks that requests are counted by their
// route pattern, never their raw URL, and unknown paths and methods by
// fixed labels.
func TestRequestMetricsByRoute(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b, withMetrics(metrics.New(), ""))
		require.Equal(t, http.StatusNotFound, bb.asUser(t, "alice", http.MethodGet, "/api/jobs/424242", "").Code)
		require.Equal(t, http.StatusNotFound, bb.asUser(t, "alice", http.MethodGet, "/api/jobs/424243", "").Code)
		require.Equal(t, http.StatusNotFound, bb.do(t, request{method: http.MethodGet, path: "/no/such/path/123"}).Code)
		bb.do(t, request{method: "BREW", path: "/healthz"})
		require.Equal(t, http.StatusOK, bb.do(t, request{method: http.MethodGet, path: "/healthz"}).Code)
		body := bb.do(t, request{method: http.MethodGet, path: "/metrics"}).Body.String()
		require.Contains(t, body, `jobhook_http_requests_total{code="404",method="GET",route="/api/jobs/:id"} 2`)
		require.Contains(t, body, `jobhook_http_requests_total{code="404",method="GET",route="unmatched"} 1`)
		require.Contains(t, body, `jobhook_http_requests_total{code="200",method="GET",route="/healthz"} 1`)
		require.Contains(t, body, `method="OTHER"`)
		require.NotContains(t, body, "424242")
		require.NotContains(t, body, "/no/such")
		require.NotContains(t, body, "BREW")
		require.True(t, strings.Contains(body, `jobhook_http_request_duration_seconds_count{method="GET",route="/api/jobs/:id"} 2`), body)
	})
}
