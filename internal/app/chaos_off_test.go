//go:build !chaos

package app_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/config"
)

// TestChaosTasksWithoutTheTagIsAnError: JOBHOOK_CHAOS_TASKS=true in a
// binary built without the chaos tag does not start silently without
// chaos_record: it is refused, saying how to build.
func TestChaosTasksWithoutTheTagIsAnError(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("JOBHOOK_CHAOS_TASKS", "true")
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		_ = a.Shutdown(context.Background())
	}
	require.Error(t, err)
	require.Contains(t, err.Error(), "built without the chaos tag")
	require.Contains(t, err.Error(), "-tags chaos")
}
