package app

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/secretbox"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestDevKeyCreatedOnceAndReused: the first call creates the key file
// (mode 0600), later ones read the same key.
func TestDevKeyCreatedOnceAndReused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", DevKeyFileName) // the folder does not exist yet
	k1, err := loadOrCreateDevKey(path)
	require.NoError(t, err)
	require.True(t, k1.created)
	_, err = secretbox.ParseKeyring(k1.spec)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	k2, err := loadOrCreateDevKey(path)
	require.NoError(t, err)
	require.False(t, k2.created)
	require.Equal(t, k1.spec, k2.spec)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file is left behind")
}

// TestDevKeyConcurrentStartsAgree: starts racing on a missing file all end
// with one key; exactly one created it.
func TestDevKeyConcurrentStartsAgree(t *testing.T) {
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), DevKeyFileName)
		const n = 8
		keys := make([]devKey, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				keys[i], errs[i] = loadOrCreateDevKey(path)
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, keys[0].spec, keys[i].spec, "round %d: two starts got different keys", round)
			if keys[i].created {
				created++
			}
		}
		require.Equal(t, 1, created, "round %d", round)
	}
}

// TestDevKeyFileProblems: a file that holds no valid key is an error that
// names the file and never shows its content; a file others may read is
// used, with a warning.
func TestDevKeyFileProblems(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte("not-a-key-SECRETISH\n"), 0o600))
	_, err := loadOrCreateDevKey(bad)
	require.Error(t, err)
	require.Contains(t, err.Error(), bad)
	require.NotContains(t, err.Error(), "SECRETISH")

	loose := filepath.Join(dir, "loose.key")
	spec, err := secretbox.GenerateKey()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(loose, []byte(spec+"\n"), 0o644))
	require.NoError(t, os.Chmod(loose, 0o644))
	k, err := loadOrCreateDevKey(loose)
	require.NoError(t, err)
	require.Equal(t, spec, k.spec)
	require.True(t, k.loose)
}

// TestOpenKeyring: a configured key wins; production never generates one
// and refuses to start when a job type has secret fields; development
// generates one beside the SQLite file, with DATABASE_URL set too.
func TestOpenKeyring(t *testing.T) {
	secretTypes := []string{"social_publish_facebook"}
	dir := t.TempDir()
	sqlite := filepath.Join(dir, "data", "jobhook.db")

	spec, err := secretbox.GenerateKey()
	require.NoError(t, err)
	kr, err := openKeyring(&config.Config{AppEnv: "production", JobsEncryptionKey: spec, SQLitePath: sqlite}, secretTypes, quiet)
	require.NoError(t, err)
	require.NotNil(t, kr)
	require.NoFileExists(t, filepath.Join(dir, "data", DevKeyFileName))

	_, err = openKeyring(&config.Config{AppEnv: "production", SQLitePath: sqlite, DatabaseURL: "postgres://db/x"}, secretTypes, quiet)
	require.Error(t, err)
	require.Contains(t, err.Error(), "JOBS_ENCRYPTION_KEY")
	require.NoFileExists(t, filepath.Join(dir, "data", DevKeyFileName), "production never writes a key file")

	kr, err = openKeyring(&config.Config{AppEnv: "production", SQLitePath: sqlite}, nil, quiet)
	require.NoError(t, err)
	require.Nil(t, kr, "no secret fields, no key needed")

	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	kr, err = openKeyring(&config.Config{AppEnv: "development", SQLitePath: sqlite, DatabaseURL: "postgres://db/x"}, secretTypes, log)
	require.NoError(t, err)
	require.NotNil(t, kr)
	require.FileExists(t, filepath.Join(dir, "data", DevKeyFileName))
	require.Contains(t, logs.String(), filepath.Join(dir, "data", DevKeyFileName))
	require.Contains(t, logs.String(), "JOBS_ENCRYPTION_KEY not set")
	require.NotContains(t, logs.String(), strings.SplitN(readFile(t, filepath.Join(dir, "data", DevKeyFileName)), ":", 2)[1], "the key itself is never logged")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}
