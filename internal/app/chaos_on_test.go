//go:build chaos

package app_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
)

// TestChaosTasksInTheChaosBuild: built with -tags chaos,
// JOBHOOK_CHAOS_TASKS=true registers chaos_record.
func TestChaosTasksInTheChaosBuild(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("EMBEDDED_QSTASH", "false")
	t.Setenv("JOBHOOK_CHAOS_TASKS", "true")
	a, base := start(t)
	defer stop(t, a)
	token, err := auth.MintHS256([]byte(auth.DevJWTSecret), "dave", time.Hour, time.Now())
	require.NoError(t, err)
	require.NotZero(t, createJob(t, base, token, `{"type":"chaos_record","payload":{"sleepMs":0}}`))
}
