package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/qstashdev"
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
	// Down rolls back the newest migration.
	files, err := filepath.Glob(filepath.Join("..", "..", "migrations", "sqlite3", "*.sql"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	sort.Strings(files)
	require.Contains(t, out, "rolled back "+filepath.Base(files[len(files)-1]))

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

	for k, v := range map[string]string{
		"APP_ENV": "production", "WORKER_SECRET": strings.Repeat("w", 40), "AUTH_JWT_SECRET": strings.Repeat("s", 40),
		"QSTASH_TOKEN": "t", "QSTASH_CURRENT_SIGNING_KEY": "sig_c", "DATABASE_URL": "postgres://db/x", "REDIS_URL": "redis://r:6379",
	} {
		t.Setenv(k, v)
	}
	code, _, errOut = runCmd(t, "token", "--user", "alice")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "refusing to mint tokens")
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCmd(t, "frobnicate")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
}

// TestSchedulesCommands runs `schedules sync` and `schedules list` against
// an in-process QStash reached over HTTP, as any QStash is.
func TestSchedulesCommands(t *testing.T) {
	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	dev, err := qstashdev.New(qstashdev.Config{Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey})
	require.NoError(t, err)
	srv := httptest.NewServer(dev)
	defer srv.Close()
	t.Setenv("QSTASH_URL", srv.URL)
	t.Setenv("QSTASH_TOKEN", keys.Token)
	t.Setenv("QSTASH_CURRENT_SIGNING_KEY", keys.CurrentSigningKey)
	t.Setenv("PUBLIC_URL", "https://jobs.example.com")
	file := filepath.Join("..", "..", "qstash.schedules.json")

	code, out, errOut := runCmd(t, "schedules", "sync", "--dry-run", "--file", file)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "would create   jobhook-drain  * * * * * https://jobs.example.com/api/workers")
	require.Empty(t, dev.Schedules())

	code, out, _ = runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 0, code)
	require.Contains(t, out, "created        jobhook-drain")
	code, out, _ = runCmd(t, "schedules", "sync", "--file", file)
	require.Equal(t, 0, code)
	require.Contains(t, out, "unchanged      jobhook-drain")

	code, out, _ = runCmd(t, "schedules", "list")
	require.Equal(t, 0, code)
	require.Contains(t, out, "jobhook-drain")
	require.Contains(t, out, "(jobhook)")

	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"schedules":[{"name":"x","cron":"99 * * * *","path":"/api/workers"}]}`), 0o600))
	code, _, errOut = runCmd(t, "schedules", "sync", "--file", bad)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, `schedules[0] ("x"): cron "99 * * * *"`)

	t.Setenv("QSTASH_TOKEN", "")
	code, _, errOut = runCmd(t, "schedules", "list")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "QSTASH_TOKEN is not set")
}
