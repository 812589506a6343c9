package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// TestZeroConfigCoversEveryJobType: a development server started with no
// configuration at all (as `jobhook serve` in a fresh folder) creates the
// job types with secret fields — social_publish_instagram,
// social_publish_facebook, scheduled_publish — with 201: it generated a
// JOBS_ENCRYPTION_KEY beside the SQLite file (mode 0600). A restart reuses
// that key: a job sealed before the restart opens and posts with its token.
func TestZeroConfigCoversEveryJobType(t *testing.T) {
	fake := graph.New()
	defer fake.Close()
	const token = "EAAzeroconfig-page-token"
	fake.Token = token // any other token (a failed decryption) is refused

	data := filepath.Join(t.TempDir(), "data")
	t.Setenv("SQLITE_PATH", filepath.Join(data, "jobhook.db"))
	t.Setenv("GRAPH_API_BASE_URL", fake.URL)
	// Nothing runs before the restart.
	t.Setenv("EMBEDDED_QSTASH", "false")
	t.Setenv("INPROCESS_WORKER", "false")
	a1, base := start(t)

	user, err := auth.MintHS256([]byte(auth.DevJWTSecret), "erin", time.Hour, time.Now())
	require.NoError(t, err)
	later := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	createJob(t, base, user, `{"type":"social_publish_instagram","payload":{"igUserId":"17841400000000001","accessToken":"EAAig","imageUrls":["https://cdn.example.com/a.jpg"],"caption":"hi"}}`)
	createJob(t, base, user, fmt.Sprintf(`{"type":"scheduled_publish","scheduledFor":%q,"payload":{"caption":"Spring","mediaUrls":["https://cdn.example.com/a.jpg"],"targets":[{"network":"facebook","accountId":"1000","accessToken":"EAAfb"}]}}`, later))
	fb := createJob(t, base, user, fmt.Sprintf(`{"type":"social_publish_facebook","payload":{"pageId":"102030405060708","accessToken":%q,"message":"sealed before the restart"}}`, token))
	keyFile := filepath.Join(data, "encryption.key")
	st, err := os.Stat(keyFile)
	require.NoError(t, err, "the development key is kept beside the SQLite file")
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	stop(t, a1)

	t.Setenv("INPROCESS_WORKER", "true")
	a2, _ := start(t)
	defer stop(t, a2)
	again, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.Equal(t, string(key), string(again), "the restart reuses the key")
	testenv.WaitFor(t, 15*time.Second, "the Facebook job sealed before the restart to complete", func() bool {
		job, err := a2.Service.Get(context.Background(), "erin", fb)
		require.NoError(t, err)
		require.NotEqual(t, models.StatusFailed, job.Status, job.Error)
		return job.Status == models.StatusCompleted
	})
	require.Len(t, fake.Posts(), 1)
}
