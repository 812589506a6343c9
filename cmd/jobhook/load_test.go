package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/internal/config"
)

// TestLoadCommand runs `jobhook load` against an embedded server on
// loopback: every job is created and finished, and the figures are printed.
func TestLoadCommand(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	t.Setenv("PORT", port)
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "j.db"))
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	// chaos_record in-process: serve has it only when built with -tags chaos.
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.WithJobTypes(chaostask.Register))
	require.NoError(t, err)
	require.NoError(t, a.Start(ln))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, a.Shutdown(ctx))
	}()

	code, out, errOut := runCmd(t, "load", "--url", "http://127.0.0.1:"+port, "--jobs", "60", "--concurrency", "4",
		"--type", "chaos_record", "--payload", `{"sleepMs":0}`, "--timeout", "1m")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "created 60 jobs")
	require.Contains(t, out, "all finished")
	require.NotContains(t, out, "refused")

	code, _, errOut = runCmd(t, "load", "--url", "http://192.0.2.1:8080")
	require.Equal(t, 1, code)
	require.True(t, strings.Contains(errOut, "loopback"), errOut)
}

// TestLoadDefaultPayloadFollowsTheURL: with the default type and payload,
// load scrapes the server it targets (not a fixed localhost:8080), which
// works on a server that allows loopback scraping, as the walk-through's.
func TestLoadDefaultPayloadFollowsTheURL(t *testing.T) {
	base := startServer(t, map[string]string{"SCRAPE_ALLOW_PRIVATE": "true"})
	code, out, errOut := runCmd(t, "load", "--url", base, "--jobs", "5", "--concurrency", "2", "--timeout", "1m")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, "created 5 jobs")
	require.Contains(t, out, "all finished")
	require.Contains(t, out, ": 5 completed, 0 failed;")
	require.NotContains(t, out, "refused")
}

// TestLoadFailsWhenJobsFail: on a default server, which refuses to scrape
// loopback addresses, every job fails: load says so, says why, and exits 1
// (the seed printed "all finished" and exited 0).
func TestLoadFailsWhenJobsFail(t *testing.T) {
	base := startServer(t, nil)
	code, out, errOut := runCmd(t, "load", "--url", base, "--jobs", "4", "--concurrency", "2", "--timeout", "1m")
	require.Equal(t, 1, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, ": 0 completed, 4 failed;")
	require.Contains(t, out, "a failed job's error: job ")
	require.Contains(t, out, "SCRAPE_ALLOW_PRIVATE=true")
	require.Contains(t, errOut, "jobhook load: 4 of 4 jobs failed\n")
}

// TestLoadReportsRefusalsInWords: creates refused by the rate limit are
// counted by status in words, and fail the run.
func TestLoadReportsRefusalsInWords(t *testing.T) {
	base := startServer(t, map[string]string{"SCRAPE_ALLOW_PRIVATE": "true", "CREATE_BURST": "3", "CREATE_RATE_PER_MINUTE": "1"})
	code, out, errOut := runCmd(t, "load", "--url", base, "--jobs", "6", "--concurrency", "1", "--timeout", "1m")
	require.Equal(t, 1, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, "created 3 jobs")
	require.Contains(t, out, "refused 3 creates: 3 with 429 Too Many Requests (rate_limited)\n")
	require.Contains(t, out, "raise CREATE_RATE_PER_MINUTE and CREATE_BURST")
	require.Contains(t, out, ": 3 completed, 0 failed;")
	require.NotContains(t, out, "map[")
	require.Contains(t, errOut, "jobhook load: 3 creates were refused\n")
}

// TestLoadShowsProgress: while it runs, load prints a line per interval
// to stderr.
func TestLoadShowsProgress(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/robots.txt" {
			http.NotFound(w, r)
			return
		}
		time.Sleep(300 * time.Millisecond) // a slow page keeps the jobs open
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<title>slow</title>"))
	}))
	defer slow.Close()
	base := startServer(t, map[string]string{"SCRAPE_ALLOW_PRIVATE": "true"})
	code, out, errOut := runCmd(t, "load", "--url", base, "--jobs", "3", "--concurrency", "1",
		"--payload", `{"url":"`+slow.URL+`/"}`, "--progress-interval", "50ms", "--timeout", "1m")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, errOut, "load: ")
	require.Contains(t, errOut, "waiting: ")
	require.Contains(t, out, ": 3 completed, 0 failed;")
}

// TestLoadReusesConnections: the 16 clients keep their connections open
// between requests (http.Transport keeps only 2 idle per host unless
// told otherwise), so a run opens a connection or two per client, not
// one per create.
func TestLoadReusesConnections(t *testing.T) {
	var opened atomic.Int64
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"jobId":1,"status":"pending"}`))
			return
		}
		_, _ = w.Write([]byte(`{"jobs":[]}`))
	}))
	api.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	api.Start()
	defer api.Close()
	t.Setenv("AUTH_JWT_SECRET", "load-test-secret-load-test-secret-0123")
	code, out, errOut := runCmd(t, "load", "--url", api.URL, "--jobs", "400", "--concurrency", "16",
		"--type", "chaos_record", "--payload", `{}`, "--timeout", "1m")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, "created 400 jobs")
	// A client may dial while its last connection is on its way back to
	// the idle pool, so up to two per client; without reuse it would be
	// hundreds.
	require.LessOrEqual(t, opened.Load(), int64(2*16), "connections opened for 400 creates by 16 clients")
}

// TestLoadCreateOnly: with --create-only, load reports the creates and
// exits without asking for the jobs.
func TestLoadCreateOnly(t *testing.T) {
	var gets atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			gets.Add(1)
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"jobId":1,"status":"pending"}`))
	}))
	defer api.Close()
	t.Setenv("AUTH_JWT_SECRET", "load-test-secret-load-test-secret-0123")
	code, out, errOut := runCmd(t, "load", "--url", api.URL, "--jobs", "20", "--concurrency", "4",
		"--type", "chaos_record", "--payload", `{}`, "--create-only")
	require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
	require.Contains(t, out, "created 20 jobs")
	require.NotContains(t, out, "all finished")
	require.Zero(t, gets.Load(), "no job was read")
}
