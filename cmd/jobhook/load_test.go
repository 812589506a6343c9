package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
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
	a.Start(ln)
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
