package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestBusyDrainRunsARetryWhenItFallsDue: a retry that falls due while a
// drain works through a backlog of lower priority is promoted during the
// drain and runs before the backlog ends, not after it.
func TestBusyDrainRunsARetryWhenItFallsDue(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		const backlog = 60
		ctx := context.Background()
		x := setup(t, b)
		var ran atomic.Int32 // backlog jobs run so far
		var ranBeforeRetry atomic.Int32
		ranBeforeRetry.Store(-1)
		var first atomic.Bool
		x.registry.MustRegister("slow", jobs.HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
			// Each backlog job takes 50 ms, on both clocks.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			x.clock.Advance(50 * time.Millisecond)
			ran.Add(1)
			return nil, nil
		}))
		x.registry.MustRegister("flaky", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			if !first.Swap(true) {
				return nil, errors.New("first attempt fails")
			}
			ranBeforeRetry.Store(ran.Load())
			return nil, nil
		}))
		w := x.worker(jobs.Config{Concurrency: 1, Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
		flaky := x.create(t, jobs.CreateRequest{Type: "flaky", Priority: 10})
		for i := 0; i < backlog; i++ {
			x.create(t, jobs.CreateRequest{Type: "slow"})
		}

		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, backlog+1, sum.Completed, "%+v", sum)
		var row models.Job
		require.NoError(t, b.DB.Gorm.Take(&row, flaky.ID).Error)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.Equal(t, 2, row.Attempts)
		// The retry fell due after 6 backlog jobs (300 ms of the clock)
		// and the drain promotes due jobs every second (20 jobs): it ran
		// well before the backlog's end.
		got := ranBeforeRetry.Load()
		require.GreaterOrEqual(t, got, int32(6), "the retry ran before it was due")
		require.Less(t, got, int32(backlog), "the retry waited for the whole backlog")
		t.Logf("the retry ran after %d of %d backlog jobs", got, backlog)
	})
}
