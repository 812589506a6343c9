package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
)

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestMigrateCommand(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "j.db"))
	code, out, _ := runCmd(t, "migrate", "status")
	require.Equal(t, 0, code)
	require.Contains(t, out, "00001_create_jobs.sql")
	require.Contains(t, out, "pending")

	code, out, _ = runCmd(t, "migrate", "up")
	require.Equal(t, 0, code)
	require.Contains(t, out, "applied 00001_create_jobs.sql")
	code, out, _ = runCmd(t, "migrate", "up")
	require.Equal(t, 0, code)
	require.Contains(t, out, "no pending migrations")

	code, out, _ = runCmd(t, "migrate", "down")
	require.Equal(t, 0, code)
	require.Contains(t, out, "rolled back 00002_job_qstash_message.sql")

	code, _, errOut := runCmd(t, "migrate", "sideways")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "usage: jobhook migrate up|down|status")
}

func TestTokenCommand(t *testing.T) {
	code, out, _ := runCmd(t, "token", "--user", "alice")
	require.Equal(t, 0, code)
	user, err := auth.NewHS256Verifier([]byte(auth.DevJWTSecret)).Verify(context.Background(), strings.TrimSpace(out))
	require.NoError(t, err)
	require.Equal(t, "alice", user)

	code, _, errOut := runCmd(t, "token")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--user")

	t.Setenv("APP_ENV", "production")
	t.Setenv("WORKER_SECRET", strings.Repeat("w", 40))
	t.Setenv("AUTH_JWT_SECRET", strings.Repeat("s", 40))
	code, _, errOut = runCmd(t, "token", "--user", "alice")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "refusing to mint tokens")
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCmd(t, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
}
