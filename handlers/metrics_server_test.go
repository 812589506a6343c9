package handlers_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/metrics"
)

// TestMetricsServer: the metrics listener's app serves GET and HEAD
// /metrics (behind the token when set) and answers everything else 404
// not_found in the API's error shape.
func TestMetricsServer(t *testing.T) {
	do := func(h http.Handler, method, path, auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	code := func(t *testing.T, rec *httptest.ResponseRecorder) string {
		t.Helper()
		var body struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
		return body.Error.Code
	}
	t.Run("open", func(t *testing.T) {
		h := handlers.NewMetricsServer(handlers.MetricsServerConfig{Metrics: metrics.New().Handler()})
		rec := do(h, http.MethodGet, "/metrics", "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), "go_goroutines")
		require.Equal(t, http.StatusOK, do(h, http.MethodHead, "/metrics", "").Code)
		for _, r := range [][2]string{{http.MethodPost, "/metrics"}, {http.MethodDelete, "/metrics"}, {http.MethodGet, "/"}, {http.MethodGet, "/healthz"}, {http.MethodGet, "/api/jobs"}, {http.MethodPost, "/api/workers"}} {
			rec := do(h, r[0], r[1], "")
			require.Equal(t, http.StatusNotFound, rec.Code, "%s %s", r[0], r[1])
			require.Equal(t, handlers.CodeNotFound, code(t, rec), "%s %s", r[0], r[1])
		}
	})
	t.Run("token", func(t *testing.T) {
		h := handlers.NewMetricsServer(handlers.MetricsServerConfig{Metrics: metrics.New().Handler(), Token: testMetricsToken})
		rec := do(h, http.MethodGet, "/metrics", "")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, handlers.CodeMissingToken, code(t, rec))
		require.Equal(t, "Bearer", rec.Header().Get("WWW-Authenticate"))
		rec = do(h, http.MethodGet, "/metrics", "Bearer "+testMetricsToken+"x")
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, handlers.CodeInvalidToken, code(t, rec))
		rec = do(h, http.MethodGet, "/metrics", "Bearer "+testMetricsToken)
		require.Equal(t, http.StatusOK, rec.Code)
		require.True(t, strings.Contains(rec.Body.String(), "go_goroutines"))
	})
}
