package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func TestDrainRunsJobsInPriorityThenFIFOOrder(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		rows := x.seed(t, 300, func(i int) int { return []int{0, 999999, 7, 7, 500000}[i%5] })
		sum, err := x.worker(jobs.WorkerConfig{Concurrency: 1}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, 300, sum.Claimed)
		require.Equal(t, 300, sum.Completed)
		require.Zero(t, sum.Remaining)

		want := append([]models.Job(nil), rows...)
		sort.SliceStable(want, func(i, j int) bool { return want[i].Priority > want[j].Priority })
		_, order, _ := x.rec.snapshot()
		require.Len(t, order, len(want))
		for i := range want {
			require.Equal(t, want[i].ID, order[i], "position %d", i)
		}
	})
}

func TestConcurrentDrainsRunEveryJobExactlyOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		const n = 2000
		rows := x.seed(t, n, func(i int) int { return i % 10 })
		var (
			wg   sync.WaitGroup
			sums = make([]jobs.DrainSummary, 4)
		)
		for i := range sums {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := x.worker(jobs.WorkerConfig{Concurrency: 8})
				s, err := w.Drain(context.Background(), 2*time.Minute)
				assert.NoError(t, err)
				sums[i] = s
			}()
		}
		wg.Wait()
		calls, _, overlapped := x.rec.snapshot()
		require.Empty(t, overlapped, "no job may run twice at the same time")
		require.Len(t, calls, n, "every job ran")
		for _, r := range rows {
			require.Equal(t, 1, calls[r.ID], "job %d ran %d times", r.ID, calls[r.ID])
		}
		completed := 0
		for _, s := range sums {
			completed += s.Completed
		}
		require.Equal(t, n, completed)
		require.EqualValues(t, n, x.countStatus(t, models.StatusCompleted))
		d, err := x.queue.Depth(context.Background())
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d)
	})
}

func TestRetryThenSuccessWithGrowingBackoff(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) {
			if call < 3 {
				return nil, fmt.Errorf("flaky provider, call %d", call)
			}
			return json.RawMessage(`{"done":true}`), nil
		}
		w := x.worker(jobs.WorkerConfig{Backoff: jobs.ExponentialBackoff(10*time.Second, time.Hour, func() float64 { return 0.5 })})
		job := x.create(t, jobs.CreateRequest{})

		var delays []time.Duration
		for attempt := 1; attempt <= 2; attempt++ {
			sum, err := w.Drain(ctx, time.Minute)
			require.NoError(t, err)
			require.Equal(t, 1, sum.Retried, "attempt %d", attempt)
			row := x.reload(t, job.ID)
			require.Equal(t, models.StatusPending, row.Status)
			require.Equal(t, attempt, row.Attempts)
			require.Contains(t, row.Error, "flaky provider")
			delay := row.NextRunAt.Sub(x.clock.Now())
			delays = append(delays, delay)

			// Not before its time.
			x.clock.Advance(delay - time.Millisecond)
			sum, err = w.Drain(ctx, time.Minute)
			require.NoError(t, err)
			require.Zero(t, sum.Claimed, "attempt %d ran before its backoff", attempt+1)
			x.clock.Advance(time.Millisecond)
		}
		require.Equal(t, []time.Duration{7500 * time.Millisecond, 15 * time.Second}, delays, "delays grow exponentially")

		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.Equal(t, 3, row.Attempts)
		require.JSONEq(t, `{"done":true}`, string(row.Result))
		require.Empty(t, row.Error)
		require.NotNil(t, row.CompletedAt)
	})
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
			return nil, jobs.Permanent(errors.New("account suspended"))
		}
		job := x.create(t, jobs.CreateRequest{MaxAttempts: 5})
		sum, err := x.worker(jobs.WorkerConfig{}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.Equal(t, "account suspended", row.Error)
	})
}

func TestFailsForGoodAfterMaxAttempts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) { return nil, errors.New("still down") }
		w := x.worker(jobs.WorkerConfig{})
		job := x.create(t, jobs.CreateRequest{MaxAttempts: 2})
		_, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		x.clock.Advance(time.Hour)
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, 2, row.Attempts)
		x.clock.Advance(24 * time.Hour)
		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Zero(t, sum.Claimed, "a failed job never runs again")
	})
}

func TestRetryAfterIsHonoured(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
			return nil, jobs.RetryAfter(errors.New("429 too many requests"), 90*time.Second)
		}
		job := x.create(t, jobs.CreateRequest{})
		_, err := x.worker(jobs.WorkerConfig{Backoff: func(int) time.Duration { return time.Second }}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		row := x.reload(t, job.ID)
		require.Equal(t, 90*time.Second, row.NextRunAt.Sub(x.clock.Now()))
	})
}

func TestTimeoutAndPanicAreRetried(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(job *models.Job, _ int) (json.RawMessage, error) {
			var p struct{ Panic bool }
			_ = json.Unmarshal(job.Payload, &p)
			if p.Panic {
				panic("boom")
			}
			return nil, errors.New("unreachable")
		}
		x.registry.MustRegister("slow", jobs.HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}))
		slow := x.create(t, jobs.CreateRequest{Type: "slow"})
		boom := x.create(t, jobs.CreateRequest{Payload: json.RawMessage(`{"panic":true}`)})
		sum, err := x.worker(jobs.WorkerConfig{JobTimeout: 50 * time.Millisecond}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum.Retried)
		require.Contains(t, x.reload(t, slow.ID).Error, "timed out after 50ms")
		got := x.reload(t, boom.ID)
		require.Equal(t, "handler panicked: boom", got.Error, "the stack goes to the log, not the job")
	})
}

func TestDrainSkipsCancelledJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		keep := x.create(t, jobs.CreateRequest{})
		gone := x.create(t, jobs.CreateRequest{})
		// Cancel in the database only, leaving the id in Redis, as a cancel
		// racing a claim would.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", gone.ID).Update("status", models.StatusCancelled).Error)
		sum, err := x.worker(jobs.WorkerConfig{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		require.Equal(t, 1, sum.Skipped)
		calls, _, _ := x.rec.snapshot()
		require.Equal(t, map[int64]int{keep.ID: 1}, calls)
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d)
	})
}

func TestScheduledJobRunsOnlyWhenDue(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		at := x.clock.Now().Add(10 * time.Minute)
		job := x.create(t, jobs.CreateRequest{ScheduledFor: &at})
		require.Equal(t, models.StatusScheduled, job.Status)
		w := x.worker(jobs.WorkerConfig{})
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Zero(t, sum.Claimed)
		x.clock.Advance(10 * time.Minute)
		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Promoted)
		require.Equal(t, 1, sum.Completed)
		require.Equal(t, models.StatusCompleted, x.reload(t, job.ID).Status)
	})
}

func TestReconcilerRestoresJobsRedisLost(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		rows := x.seed(t, 600, nil)
		// A retry waiting in the future.
		later := x.clock.Now().Add(time.Hour)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", rows[0].ID).Update("next_run_at", later).Error)
		// Redis loses everything.
		keys, err := b.Redis.Keys(ctx, b.Prefix+"*").Result()
		require.NoError(t, err)
		require.NoError(t, b.Redis.Del(ctx, keys...).Err())

		rec := jobs.NewReconciler(jobs.ReconcilerConfig{DB: b.DB.Gorm, Queue: x.queue, Clock: x.clock, Logger: quiet()})
		res, err := rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.ReconcileResult{Checked: 600, Enqueued: 600}, res)
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{Pending: 599, Delayed: 1}, d)

		res, err = rec.Run(ctx)
		require.NoError(t, err)
		require.Zero(t, res.Enqueued, "a second pass finds nothing missing")

		sum, err := x.worker(jobs.WorkerConfig{Concurrency: 16}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 599, sum.Completed)
		x.clock.Advance(time.Hour)
		sum, err = x.worker(jobs.WorkerConfig{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
	})
}

func TestEnqueueFailureAfterInsertStillRuns(t *testing.T) {
	ctx := context.Background()
	b := testenv.Embedded(t)
	x := setup(t, b)
	b.Mini.SetError("LOADING Redis is loading the dataset in memory")
	job := x.create(t, jobs.CreateRequest{})
	require.Equal(t, models.StatusPending, job.Status, "the create succeeds: the row is the truth")
	b.Mini.SetError("")
	rec := jobs.NewReconciler(jobs.ReconcilerConfig{DB: b.DB.Gorm, Queue: x.queue, Clock: x.clock, Logger: quiet()})
	w := x.worker(jobs.WorkerConfig{Reconciler: rec})
	sum, err := w.Drain(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, sum.Reenqueued)
	require.Equal(t, 1, sum.Completed)
	require.Equal(t, models.StatusCompleted, x.reload(t, job.ID).Status)
}

func TestBackoffBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		bf := jobs.ExponentialBackoff(10*time.Second, time.Hour, func() float64 { return r })
		prev := time.Duration(0)
		for attempt := 1; attempt <= 25; attempt++ {
			d := bf(attempt)
			full := 10 * time.Second << (attempt - 1)
			if full > time.Hour || full <= 0 {
				full = time.Hour
			}
			require.GreaterOrEqual(t, d, full/2, "attempt %d", attempt)
			require.LessOrEqual(t, d, full, "attempt %d", attempt)
			require.GreaterOrEqual(t, d, prev, "attempt %d: delays never shrink", attempt)
			prev = d
		}
	}
}

func TestReconcilerRecoversJobsOfALostWorker(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		lost := x.create(t, jobs.CreateRequest{})
		last := x.create(t, jobs.CreateRequest{MaxAttempts: 1})
		alive := x.create(t, jobs.CreateRequest{})
		// A worker claims all three and dies; Redis keeps the leases of
		// two, and loses the third's.
		ids, err := x.queue.Claim(ctx, 3, time.Minute)
		require.NoError(t, err)
		require.Len(t, ids, 3)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": models.StatusProcessing, "attempts": 1}).Error)
		require.NoError(t, b.Redis.ZRem(ctx, x.queue.Key("processing"), lost.ID).Err())

		rec := jobs.NewReconciler(jobs.ReconcilerConfig{DB: b.DB.Gorm, Queue: x.queue, Clock: x.clock, Logger: quiet()})
		res, err := rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, res.Recovered, "only the job without a lease")
		require.Equal(t, models.StatusProcessing, x.reload(t, alive.ID).Status, "a live lease is left alone")

		// The other two leases expire.
		x.clock.Advance(2 * time.Minute)
		res, err = rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, res.Recovered)
		got := x.reload(t, last.ID)
		require.Equal(t, models.StatusFailed, got.Status, "out of attempts")
		require.Equal(t, "lease expired: worker lost", got.Error)

		sum, err := x.worker(jobs.WorkerConfig{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum.Completed)
		for _, id := range []int64{lost.ID, alive.ID} {
			row := x.reload(t, id)
			require.Equal(t, models.StatusCompleted, row.Status)
			require.Equal(t, 2, row.Attempts, "the lost attempt counts")
		}
	})
}
