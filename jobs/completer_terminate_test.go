package jobs_test

import (
	"context"
	"encoding/json"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestOutcomesSurviveTerminatedConnections kills every database connection
// of the worker (pg_terminate_backend, Postgres only) several times during
// a drain of jobs with one attempt each. The completer retries the writes
// that hit a dead connection: every job ends completed, each handler ran
// once, and none failed "lease expired" although it succeeded.
func TestOutcomesSurviveTerminatedConnections(t *testing.T) {
	if !testenv.RealConfigured() {
		t.Skip("needs TEST_DATABASE_URL and TEST_REDIS_URL")
	}
	ctx := context.Background()
	b := testenv.Real(t)
	var schema string
	require.NoError(t, b.DB.Gorm.Raw("SELECT current_schema()").Scan(&schema).Error)
	app := "jobhook_kill_" + testenv.RandomID()
	u, err := url.Parse(testenv.PostgresURL(t))
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	victim, err := database.Open(ctx, database.Options{URL: u.String(), MaxOpenConns: 10})
	require.NoError(t, err)
	t.Cleanup(func() { _ = victim.Close() })

	reg := jobs.NewRegistry()
	var mu sync.Mutex
	runs := map[int64]int{}
	total := 0
	kill := func() {
		// From the test's own pool: only the worker's connections die.
		require.NoError(t, b.DB.Gorm.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?", app).Error)
	}
	reg.MustRegister("once", jobs.HandlerFunc(func(_ context.Context, job *models.Job) (json.RawMessage, error) {
		mu.Lock()
		runs[job.ID]++
		total++
		n := total
		mu.Unlock()
		if n%50 == 0 {
			kill()
		}
		return json.RawMessage(`{}`), nil
	}))
	// Two engines on one queue: the jobs are created through the test's
	// pool, and drained through the victim's.
	engine := func(db *gorm.DB) *jobs.Engine {
		eng, err := jobs.New(jobs.Config{DB: db, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: quiet(), Concurrency: 8, JobTimeout: 10 * time.Second})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, eng.Shutdown(context.Background())) })
		return eng
	}
	svc := engine(b.DB.Gorm).Service()
	const n = 400
	for range n {
		_, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: "once", MaxAttempts: 1})
		require.NoError(t, err)
	}
	drainer := engine(victim.Gorm)
	w := drainer.Worker()
	// A claim that hits a dead connection ends its drain (the ids go back
	// to the queue); the next drain goes on.
	completed := 0
	testenv.WaitFor(t, 2*time.Minute, "every job drained", func() bool {
		sum, _ := w.Drain(ctx, time.Minute)
		completed += sum.Completed
		d, err := drainer.Depth(ctx)
		return err == nil && d.Pending == 0 && d.Processing == 0
	})
	var byStatus []struct {
		Status models.Status
		N      int
	}
	require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Select("status, count(*) AS n").Group("status").Scan(&byStatus).Error)
	require.Len(t, byStatus, 1, "%v", byStatus)
	require.Equal(t, models.StatusCompleted, byStatus[0].Status)
	require.Equal(t, n, byStatus[0].N)
	require.Equal(t, n, completed, "each drain reported its jobs' outcomes")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, n)
	for id, r := range runs {
		require.Equal(t, 1, r, "job %d ran %d times", id, r)
	}
	require.GreaterOrEqual(t, total/50, 7, "connections were killed during the drain")
}
