package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// TestConcurrentCreatesAreGrouped: creates that arrive while a write runs
// go into the next write together, and each caller still gets its own
// job, created once, enqueued once; two callers with one idempotency key
// get the same job, one of them created.
func TestConcurrentCreatesAreGrouped(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		reg := NewRegistry()
		reg.MustRegister("noop", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: slog.New(slog.DiscardHandler)})

		// Hold the lead: the creates below queue up behind it.
		svc.groups.mu.Lock()
		svc.groups.busy = true
		svc.groups.mu.Unlock()
		const n = 20
		type answer struct {
			job     *models.Job
			created bool
			err     error
		}
		answers := make([]answer, n+2)
		var wg sync.WaitGroup
		for i := range n + 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := CreateRequest{UserID: "u1", Type: "noop", Payload: json.RawMessage(`{}`)}
				if i >= n {
					req.IdempotencyKey = "same"
				}
				job, created, err := svc.Create(ctx, req)
				answers[i] = answer{job, created, err}
			}()
		}
		require.Eventually(t, func() bool {
			svc.groups.mu.Lock()
			defer svc.groups.mu.Unlock()
			return len(svc.groups.waiting) == n+2
		}, 10*time.Second, time.Millisecond)
		// Release the lead to the first caller waiting: it writes them all.
		svc.groups.mu.Lock()
		svc.groups.waiting[0].lead <- struct{}{}
		svc.groups.mu.Unlock()
		wg.Wait()

		ids := map[int64]bool{}
		for i, a := range answers[:n] {
			require.NoError(t, a.err, "create %d", i)
			require.True(t, a.created)
			require.False(t, ids[a.job.ID], "job %d returned twice", a.job.ID)
			ids[a.job.ID] = true
		}
		require.NoError(t, answers[n].err)
		require.NoError(t, answers[n+1].err)
		require.Equal(t, answers[n].job.ID, answers[n+1].job.ID, "one key, one job")
		require.NotEqual(t, answers[n].created, answers[n+1].created, "one of the two created it")
		var stored int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&stored).Error)
		require.EqualValues(t, n+1, stored)
		d, err := q.Depth(ctx)
		require.NoError(t, err)
		require.EqualValues(t, n+1, d.Pending, "each job enqueued once")
		svc.groups.mu.Lock()
		defer svc.groups.mu.Unlock()
		require.False(t, svc.groups.busy, "the lead is given up once nobody waits")
	})
}
