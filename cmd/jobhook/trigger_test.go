package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
)

// startServer runs an embedded jobhook server on loopback with the
// settings given (on top of a fresh SQLite file) and returns its base URL.
// The settings stay in the environment for the commands the test runs.
func startServer(t *testing.T, env map[string]string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	t.Setenv("PORT", port)
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "server.db"))
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		ln.Close()
	}
	require.NoError(t, err)
	require.NoError(t, a.Start(ln))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.Shutdown(ctx))
	})
	return "http://127.0.0.1:" + port
}

// createJob creates a job as user alice (development token) and returns
// its id.
func createJob(t *testing.T, base, body string) int64 {
	t.Helper()
	tok, err := auth.MintHS256([]byte(auth.DevJWTSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/api/jobs", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusCreated, res.StatusCode, string(raw))
	var created struct {
		JobID int64 `json:"jobId"`
	}
	require.NoError(t, json.Unmarshal(raw, &created))
	return created.JobID
}

// countingProxy forwards to base and counts the worker calls it passes.
func countingProxy(t *testing.T, base string) (string, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(base)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/api/workers" {
			calls.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

// quiet is a server that runs jobs only when called: no embedded QStash.
var quiet = map[string]string{"EMBEDDED_QSTASH": "false", "SCRAPE_ALLOW_PRIVATE": "true"}

// TestTriggerWaitReadsTheServer: the job's state comes from the server
// over HTTP; no local database is opened (the seed read a stray local
// SQLite file and reported "completed" for a job that had failed).
func TestTriggerWaitReadsTheServer(t *testing.T) {
	base := startServer(t, quiet)
	id := createJob(t, base, `{"type":"web_scraping","payload":{"url":"http://127.0.0.1:1/"},"maxAttempts":1}`)
	stray := filepath.Join(t.TempDir(), "stray.db")
	t.Setenv("SQLITE_PATH", stray)
	t.Setenv("DATABASE_URL", "")

	code, out, errOut := runCmd(t, "trigger", "--url", base, "--wait", fmt.Sprint(id), "--timeout", "30s", "--poll-interval", "50ms")
	require.Equal(t, 1, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, "drain: claimed 1")
	require.True(t, strings.HasPrefix(errOut, fmt.Sprintf("jobhook trigger: job %d failed: ", id)), errOut)
	_, err := os.Stat(stray)
	require.True(t, os.IsNotExist(err), "no local database was opened")

	code, _, errOut = runCmd(t, "trigger", "--url", base, "--wait", "999")
	require.Equal(t, 1, code)
	require.Equal(t, "jobhook trigger: job 999 was not found\n", errOut)

	id = createJob(t, base, `{"type":"web_scraping","payload":{"url":"`+base+`/"}}`)
	t.Setenv("PUBLIC_URL", base) // the default server address
	code, out, errOut = runCmd(t, "trigger", "--wait", fmt.Sprint(id), "--poll-interval", "50ms")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, fmt.Sprintf("job %d: completed", id))
}

// TestTriggerWaitsOutABackoff is the repro: a web_scraping job
// whose fetch is refused retries after a backoff of several seconds, and
// `trigger --wait ID --timeout 3s` calls the worker once, not thousands
// of times.
func TestTriggerWaitsOutABackoff(t *testing.T) {
	base := startServer(t, quiet)
	proxy, calls := countingProxy(t, base)
	id := createJob(t, base, `{"type":"web_scraping","payload":{"url":"http://127.0.0.1:1/"}}`)
	code, _, errOut := runCmd(t, "trigger", "--url", proxy, "--wait", fmt.Sprint(id), "--timeout", "3s")
	require.Equal(t, 1, code, errOut)
	require.Equal(t, fmt.Sprintf("jobhook trigger: job %d still pending after 3s (timed out)\n", id), errOut)
	require.Equal(t, int64(1), calls.Load(), "no worker calls during the backoff")
}
