package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/config"
)

// freeAddr returns a loopback address no one listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// fetch GETs url with an optional bearer token and returns the status
// and body.
func fetch(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(raw)
}

// TestMetricsAddrServesMetricsApart: with METRICS_ADDR the metrics are on
// their own listener (behind METRICS_TOKEN when set) and 404 on the
// public API, whose health routes stay; the listener stops with the app.
func TestMetricsAddrServesMetricsApart(t *testing.T) {
	for _, token := range []string{"", "app-test-metrics-token-0123456789abcdef"} {
		t.Run(fmt.Sprintf("token=%v", token != ""), func(t *testing.T) {
			t.Setenv("METRICS_ADDR", freeAddr(t))
			t.Setenv("METRICS_TOKEN", token)
			a, base := start(t)
			stopped := false
			defer func() {
				if !stopped {
					stop(t, a)
				}
			}()
			metricsURL := "http://" + a.MetricsAddr() + "/metrics"

			code, body := fetch(t, http.MethodGet, base+"/metrics", token)
			require.Equal(t, http.StatusNotFound, code, body)
			require.Contains(t, body, `"not_found"`)
			code, _ = fetch(t, http.MethodGet, base+"/healthz", "")
			require.Equal(t, http.StatusOK, code)
			code, _ = fetch(t, http.MethodGet, base+"/readyz", "")
			require.Equal(t, http.StatusOK, code)

			if token != "" {
				code, body = fetch(t, http.MethodGet, metricsURL, "")
				require.Equal(t, http.StatusUnauthorized, code)
				require.Contains(t, body, `"missing_token"`)
				code, body = fetch(t, http.MethodGet, metricsURL, token+"x")
				require.Equal(t, http.StatusUnauthorized, code)
				require.Contains(t, body, `"invalid_token"`)
			}
			code, body = fetch(t, http.MethodGet, metricsURL, token)
			require.Equal(t, http.StatusOK, code, body)
			require.Contains(t, body, "jobhook_queue_depth_up 1")
			require.Contains(t, body, `jobhook_http_requests_total{code="200",method="GET",route="/healthz"} 1`, "the public API's requests are counted")
			for _, path := range []string{"/healthz", "/readyz", "/api/jobs", "/"} {
				code, body = fetch(t, http.MethodGet, "http://"+a.MetricsAddr()+path, token)
				require.Equal(t, http.StatusNotFound, code, path)
				require.True(t, strings.Contains(body, `"not_found"`), body)
			}

			stop(t, a)
			stopped = true
			_, err := http.Get(metricsURL)
			require.Error(t, err, "the metrics listener stops with the app")
		})
	}
}

// TestMetricsAddrBindFailureFailsStart: a METRICS_ADDR already taken
// fails Start with an error naming it, before anything is served.
func TestMetricsAddrBindFailureFailsStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	t.Setenv("METRICS_ADDR", taken.Addr().String())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	t.Setenv("PORT", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	err = a.Start(ln)
	require.ErrorContains(t, err, "metrics listener on "+taken.Addr().String()+" (METRICS_ADDR)")
	require.NoError(t, a.Shutdown(context.Background()))
}
