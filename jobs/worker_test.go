package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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
		sum, err := x.worker(jobs.Config{Concurrency: 1}).Drain(context.Background(), time.Minute)
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
				w := x.worker(jobs.Config{Concurrency: 8})
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
		w := x.worker(jobs.Config{Backoff: jobs.ExponentialBackoff(10*time.Second, time.Hour, func() float64 { return 0.5 })})
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

		history, err := x.service.Attempts(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Len(t, history, 3, "each attempt is kept")
		for i, want := range []jobs.AttemptOutcome{jobs.AttemptRetried, jobs.AttemptRetried, jobs.AttemptCompleted} {
			require.Equal(t, i+1, history[i].Attempt)
			require.EqualValues(t, want, history[i].Outcome)
		}
		require.Contains(t, history[0].Error, "flaky provider, call 1")
	})
}

func TestPermanentErrorFailsAtOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
			return nil, jobs.Permanent(errors.New("account suspended"))
		}
		job := x.create(t, jobs.CreateRequest{MaxAttempts: 5})
		sum, err := x.worker(jobs.Config{}).Drain(context.Background(), time.Minute)
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
		w := x.worker(jobs.Config{})
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
		_, err := x.worker(jobs.Config{Backoff: func(int) time.Duration { return time.Second }}).Drain(context.Background(), time.Minute)
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
		sum, err := x.worker(jobs.Config{JobTimeout: 50 * time.Millisecond}).Drain(context.Background(), time.Minute)
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
		// This interval's reconcile pass has run already, so the drain does
		// not drop the stale id before its claim meets it.
		_, err := jobs.ReconcilerOf(x.eng).RunIfDue(ctx)
		require.NoError(t, err)
		// Cancel in the database only, leaving the id in Redis, as a cancel
		// racing a claim would.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", gone.ID).Update("status", models.StatusCancelled).Error)
		sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
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
		w := x.worker(jobs.Config{})
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

		rec := jobs.ReconcilerOf(x.eng)
		res, err := rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.ReconcileResult{Checked: 600, Enqueued: 600}, res)
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{Pending: 599, Delayed: 1}, d)

		res, err = rec.Run(ctx)
		require.NoError(t, err)
		require.Zero(t, res.Enqueued, "a second pass finds nothing missing")

		sum, err := x.worker(jobs.Config{Concurrency: 16}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 599, sum.Completed)
		x.clock.Advance(time.Hour)
		sum, err = x.worker(jobs.Config{}).Drain(ctx, time.Minute)
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
	w := x.worker(jobs.Config{})
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

func TestReaperRecoversJobsOfALostWorker(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		lost := x.create(t, jobs.CreateRequest{})
		last := x.create(t, jobs.CreateRequest{MaxAttempts: 1})
		alive := x.create(t, jobs.CreateRequest{})
		// A worker claims all three and dies; one lease is still running.
		ids, err := x.queue.Claim(ctx, 3, time.Minute)
		require.NoError(t, err)
		require.Len(t, ids, 3)
		now := x.clock.Now().UTC()
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id IN ?", ids).
			Updates(map[string]any{"status": models.StatusProcessing, "attempts": 1, "started_at": now, "lease_expires_at": now.Add(-time.Second)}).Error)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", alive.ID).Update("lease_expires_at", now.Add(30*time.Second)).Error)

		rec := jobs.ReconcilerOf(x.eng)
		n, err := rec.Reap(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n, "only the expired leases")
		require.Equal(t, models.StatusProcessing, x.reload(t, alive.ID).Status, "a live lease is left alone")
		got := x.reload(t, last.ID)
		require.Equal(t, models.StatusPending, got.Status, "a lost attempt does not consume maxAttempts")
		require.Equal(t, "lease expired: worker lost", got.Error)
		require.Equal(t, 0, got.Attempts)
		require.Equal(t, 1, got.LostAttempts)
		require.Equal(t, models.StatusPending, x.reload(t, lost.ID).Status)
		history, err := x.service.Attempts(ctx, "user-1", lost.ID)
		require.NoError(t, err)
		require.Len(t, history, 1)
		require.EqualValues(t, jobs.AttemptLost, history[0].Outcome)

		// The live one's worker dies too: its lease runs out.
		x.clock.Advance(31 * time.Second)
		sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Reaped, "reaped at the start of the drain")
		require.Equal(t, 3, sum.Completed)
		for _, id := range []int64{lost.ID, last.ID, alive.ID} {
			row := x.reload(t, id)
			require.Equal(t, models.StatusCompleted, row.Status)
			require.Equal(t, 1, row.Attempts, "the lost attempt does not count")
			require.Zero(t, row.LostAttempts, "a completion ends the lost streak")
		}
	})
}

func TestHeartbeatKeepsALongJobsLease(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		release := make(chan struct{})
		x.registry.MustRegister("long", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			<-release
			return json.RawMessage(`{}`), nil
		}))
		job := x.create(t, jobs.CreateRequest{Type: "long"})
		w := x.worker(jobs.Config{LeaseDuration: 90 * time.Millisecond})
		done := make(chan jobs.DrainSummary)
		go func() {
			s, _ := w.Drain(ctx, time.Minute)
			done <- s
		}()
		testenv.WaitFor(t, 5*time.Second, "the job to start", func() bool {
			return x.reload(t, job.ID).LeaseExpiresAt != nil
		})
		first := *x.reload(t, job.ID).LeaseExpiresAt
		// An hour passes: without a heartbeat the lease would be long gone.
		x.clock.Advance(time.Hour)
		testenv.WaitFor(t, 5*time.Second, "the heartbeat to renew the lease", func() bool {
			row := x.reload(t, job.ID)
			return row.LeaseExpiresAt != nil && row.LeaseExpiresAt.After(first.Add(30*time.Minute))
		})
		rec := jobs.ReconcilerOf(x.eng)
		n, err := rec.Reap(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "a renewed lease is not reaped")
		close(release)
		sum := <-done
		require.Equal(t, 1, sum.Completed)
		require.Nil(t, x.reload(t, job.ID).LeaseExpiresAt, "the lease is cleared when the job finishes")
	})
}

func TestLostLeaseCancelsTheHandlerAndDropsItsOutcome(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		started := make(chan struct{})
		x.registry.MustRegister("stalls", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}))
		job := x.create(t, jobs.CreateRequest{Type: "stalls"})
		w := x.worker(jobs.Config{LeaseDuration: 60 * time.Millisecond})
		done := make(chan jobs.DrainSummary)
		go func() {
			s, _ := w.Drain(ctx, time.Minute)
			done <- s
		}()
		<-started
		// Another process reaps the job and a new attempt takes it.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", job.ID).Update("attempts", 2).Error)
		sum := <-done
		require.Equal(t, 1, sum.Skipped, "the lost attempt records nothing")
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusProcessing, row.Status, "the newer attempt's state is untouched")
		require.Equal(t, 2, row.Attempts)
	})
}

func TestShutdownReleasesRunningJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		started := make(chan struct{}, 2)
		x.registry.MustRegister("quick", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		}))
		x.registry.MustRegister("endless", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}))
		endless := x.create(t, jobs.CreateRequest{Type: "endless", Priority: 10})
		waiting := x.create(t, jobs.CreateRequest{Type: "quick"})
		w := x.worker(jobs.Config{Concurrency: 1})
		done := make(chan jobs.DrainSummary)
		go func() {
			s, _ := w.Drain(ctx, time.Minute)
			done <- s
		}()
		<-started
		graceCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		w.Shutdown(graceCtx)
		sum := <-done
		require.Equal(t, 1, sum.Released)
		require.Equal(t, 0, sum.Completed, "no claim after Shutdown began")
		row := x.reload(t, endless.ID)
		require.Equal(t, models.StatusPending, row.Status)
		require.Equal(t, 0, row.Attempts, "the interrupted attempt does not count")
		require.Equal(t, models.StatusPending, x.reload(t, waiting.ID).Status)

		// Another worker (after the restart) runs both.
		sum, err := x.worker(jobs.Config{JobTimeout: 20 * time.Millisecond}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum.Claimed)
	})
}

func TestCheckpointIsHandedToTheNextAttempt(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		type progress struct{ Done int }
		var seen []int
		x.registry.MustRegister("resumable", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
			var p progress
			if _, err := jobs.LoadCheckpoint(job, &p); err != nil {
				return nil, err
			}
			seen = append(seen, p.Done)
			for p.Done < 10 {
				p.Done++
				if err := jobs.SaveCheckpoint(ctx, p); err != nil {
					return nil, err
				}
				if p.Done == 4 && job.Attempts == 1 {
					return nil, errors.New("crashed at step 4")
				}
			}
			return json.RawMessage(`{"steps":10}`), nil
		}))
		job := x.create(t, jobs.CreateRequest{Type: "resumable"})
		w := x.worker(jobs.Config{})
		_, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		x.clock.Advance(time.Hour)
		_, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int{0, 4}, seen, "the second attempt resumed from step 4")
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.Empty(t, row.Checkpoint, "cleared on completion")
		require.ErrorIs(t, jobs.SaveCheckpoint(ctx, 1), jobs.ErrNoJob)
	})
}

func TestDrainFansOutWhenWorkRemains(t *testing.T) {
	b := testenv.Embedded(t)
	x := setup(t, b)
	x.seed(t, 20, nil)
	// Each job works for 60ms; after the first, 200ms-60ms of budget
	// cannot fit another job's 150ms timeout.
	x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
		time.Sleep(60 * time.Millisecond)
		return json.RawMessage(`{}`), nil
	}
	triggers := &triggerCounter{}
	w := x.worker(jobs.Config{Concurrency: 1, JobTimeout: 150 * time.Millisecond, Publisher: triggers})
	sum, err := w.Drain(context.Background(), 200*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, 1, sum.Claimed, "the rest of the budget cannot fit another job")
	require.EqualValues(t, 19, sum.Remaining)
	require.EqualValues(t, 1, triggers.n.Load(), "work left: another worker call is asked for")
}

// triggerCounter is a Publisher that counts the triggers published.
type triggerCounter struct {
	fakePublisher
	n atomic.Int32
}

func (p *triggerCounter) Trigger(context.Context, time.Duration) error {
	p.n.Add(1)
	return nil
}

// A worker that stalled past its lease must not record over a newer claim
// of the same attempt number (a manual retry resets the count).
func TestStaleWorkerCannotOverwriteANewerClaim(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		started, proceed := make(chan struct{}), make(chan struct{})
		x.registry.MustRegister("stale", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			close(started)
			<-proceed
			return json.RawMessage(`{"from":"stale worker"}`), nil
		}))
		job := x.create(t, jobs.CreateRequest{Type: "stale", MaxAttempts: 1})
		done := make(chan jobs.DrainSummary)
		go func() {
			s, _ := x.worker(jobs.Config{LeaseDuration: time.Hour}).Drain(ctx, time.Minute)
			done <- s
		}()
		<-started
		// Reaped, failed, retried by its owner and claimed again as attempt 1.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", job.ID).
			Updates(map[string]any{"status": models.StatusProcessing, "attempts": 1, "lease_id": "newer-claim"}).Error)
		close(proceed)
		sum := <-done
		require.Equal(t, 1, sum.Skipped)
		require.Zero(t, sum.Completed)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusProcessing, row.Status)
		require.Empty(t, row.Result, "the stale result was not written")
	})
}

func TestReconcilerDropsStaleRedisEntries(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		done := x.create(t, jobs.CreateRequest{})
		cancelled := x.create(t, jobs.CreateRequest{})
		live := x.create(t, jobs.CreateRequest{})
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", done.ID).Update("status", models.StatusCompleted).Error)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", cancelled.ID).Update("status", models.StatusCancelled).Error)
		// Entries for a deleted job, and a processing entry whose row is done.
		require.NoError(t, x.queue.Enqueue(ctx, jobs.Item{ID: 999999}))
		require.NoError(t, b.Redis.ZAdd(ctx, x.queue.Key("processing"), redis.Z{Score: 1, Member: done.ID}).Err())

		rec := jobs.ReconcilerOf(x.eng)
		res, err := rec.Run(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, res.Dropped)
		members, err := x.queue.Members(ctx)
		require.NoError(t, err)
		require.Equal(t, map[int64]string{live.ID: "pending"}, members)
	})
}
