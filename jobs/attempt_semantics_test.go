package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// Issue 11: an attempt counts only a real failure; waiting is not failing.

// outcomesOf returns the outcomes of a job's history, oldest first.
func outcomesOf(t *testing.T, x *bundle, id int64) []string {
	t.Helper()
	history, err := x.service.Attempts(context.Background(), "user-1", id)
	require.NoError(t, err)
	out := make([]string, len(history))
	for i, h := range history {
		out[i] = h.Outcome
	}
	return out
}

// repeat returns n copies of s followed by tail.
func repeat(s string, n int, tail ...string) []string {
	out := make([]string, 0, n+len(tail))
	for range n {
		out = append(out, s)
	}
	return append(out, tail...)
}

// TestRetryAfterDefersWithoutCountingAttempts: a handler that asks ten
// times in a row to run an hour later (a provider's 429) is deferred ten
// times, never "out of attempts" (maxAttempts is 3), and runs an eleventh
// time; each deferral shows its error on the job and is in the history.
func TestRetryAfterDefersWithoutCountingAttempts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		x.rec.script = func(_ *models.Job, call int) (json.RawMessage, error) {
			if call <= 10 {
				return nil, jobs.RetryAfter(errors.New("429 too many requests"), time.Hour)
			}
			return json.RawMessage(`{"ok":true}`), nil
		}
		job := x.create(t, jobs.CreateRequest{})
		w := x.worker(jobs.Config{Backoff: func(int) time.Duration { return time.Second }})
		for i := 1; i <= 10; i++ {
			sum, err := w.Drain(ctx, time.Minute)
			require.NoError(t, err)
			require.Equal(t, 1, sum.Claimed, "run %d", i)
			row := x.reload(t, job.ID)
			require.Equal(t, models.StatusPending, row.Status, "run %d", i)
			require.Equal(t, 0, row.Attempts, "run %d: a deferral does not count", i)
			require.Contains(t, row.Error, "429 too many requests", "run %d: the reason is visible", i)
			require.Equal(t, time.Hour, row.NextRunAt.Sub(x.clock.Now()), "run %d", i)
			x.clock.Advance(time.Hour)
		}
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed, "the eleventh run")
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.Equal(t, 1, row.Attempts, "only the run that completed counts")
		calls, _, _ := x.rec.snapshot()
		require.Equal(t, 11, calls[job.ID])
		require.Equal(t, repeat(string(jobs.AttemptDeferred), 10, string(jobs.AttemptCompleted)), outcomesOf(t, x, job.ID))
	})
}

// TestPermanentWinsOverRetryAfter: Permanent(RetryAfter(…)) fails at once.
func TestPermanentWinsOverRetryAfter(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
			return nil, jobs.Permanent(jobs.RetryAfter(errors.New("account closed"), time.Hour))
		}
		job := x.create(t, jobs.CreateRequest{})
		_, err := x.worker(jobs.Config{}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, []string{string(jobs.AttemptFailed)}, outcomesOf(t, x, job.ID))
	})
}

// TestWaitsAreBoundedByTheExpiry: a deferral or an explicit snooze whose
// next run would come after the job's expiry fails the job with the
// reason; a wait within it does not.
func TestWaitsAreBoundedByTheExpiry(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) {
			return nil, jobs.RetryAfter(errors.New("429 too many requests"), time.Hour)
		}
		x.registry.MustRegister("snoozes", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			return nil, jobs.Snooze(time.Hour)
		}))
		expires := x.clock.Now().Add(90 * time.Minute)
		deferred := x.create(t, jobs.CreateRequest{ExpiresAt: &expires})
		snoozed := x.create(t, jobs.CreateRequest{Type: "snoozes", ExpiresAt: &expires})
		require.True(t, expires.Equal(*x.reload(t, deferred.ID).ExpiresAt), "the explicit expiry is stored")
		w := x.worker(jobs.Config{Backoff: func(int) time.Duration { return time.Second }})

		_, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		for _, id := range []int64{deferred.ID, snoozed.ID} {
			require.Equal(t, models.StatusPending, x.reload(t, id).Status, "an hour's wait ends before the expiry")
		}
		x.clock.Advance(time.Hour)
		_, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		wantReason := "gave up waiting: the next attempt at " + x.clock.Now().Add(time.Hour).UTC().Format(time.RFC3339) +
			" would be after the job expires at " + expires.UTC().Format(time.RFC3339)
		row := x.reload(t, deferred.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Contains(t, row.Error, "429 too many requests")
		require.Contains(t, row.Error, wantReason)
		require.Equal(t, []string{string(jobs.AttemptDeferred), string(jobs.AttemptFailed)}, outcomesOf(t, x, deferred.ID))
		row = x.reload(t, snoozed.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Contains(t, row.Error, wantReason)
	})
}

// TestAwaitChildrenIsNotBoundedByTheExpiry: a parent whose wait for its
// children goes past its expiry keeps waiting (the children are bounded
// themselves, by at most the parent's expiry) and completes.
func TestAwaitChildrenIsNotBoundedByTheExpiry(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		var parentCalls int
		x.registry.MustRegister("parent", jobs.HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
			parentCalls++ // one drain slot: the calls never overlap
			if _, err := jobs.SpawnChildren(ctx, []jobs.ChildSpec{{Type: "record", Payload: json.RawMessage(`{}`)}}); err != nil {
				return nil, err
			}
			if _, err := jobs.AwaitChildren(ctx, 3*time.Hour); err != nil {
				return nil, err
			}
			return json.RawMessage(`{"done":true}`), nil
		}))
		expires := x.clock.Now().Add(time.Hour)
		parent := x.create(t, jobs.CreateRequest{Type: "parent", ExpiresAt: &expires})
		// One slot: the parent's first run ends (a snooze three hours
		// long, past its expiry) before its child can run.
		sum, err := x.worker(jobs.Config{Concurrency: 1}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Snoozed)
		row := x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status, "error: %s", row.Error)
		require.Equal(t, 2, parentCalls, "woken by its child after waiting")
		var children []models.Job
		require.NoError(t, b.DB.Gorm.Where("parent_id = ?", parent.ID).Find(&children).Error)
		require.Len(t, children, 1)
		require.True(t, expires.Equal(*children[0].ExpiresAt), "a child expires no later than its parent: %v", children[0].ExpiresAt)
	})
}

// loseWorker claims the job as a worker would, then lets the worker die:
// the row is processing with an expired lease, and the reaper takes it
// back. It returns how many jobs the reap took.
func loseWorker(t *testing.T, x *bundle, id int64) int {
	t.Helper()
	ctx := context.Background()
	ids, err := x.queue.Claim(ctx, 1, time.Minute)
	require.NoError(t, err)
	require.Equal(t, []int64{id}, ids)
	now := x.clock.Now().UTC()
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).Updates(map[string]any{
		"status": models.StatusProcessing, "attempts": gorm.Expr("attempts + 1"), "lease_id": "lost-lease",
		"started_at": now, "lease_expires_at": now.Add(-time.Second)}).Error)
	n, err := jobs.ReconcilerOf(x.eng).Reap(ctx)
	require.NoError(t, err)
	return n
}

// TestLostAttemptsDoNotCount: four lost attempts in a row, then a run
// that completes: completed with one attempt, the losses in the history.
func TestLostAttemptsDoNotCount(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		job := x.create(t, jobs.CreateRequest{MaxAttempts: 1})
		for i := 1; i <= 4; i++ {
			require.Equal(t, 1, loseWorker(t, x, job.ID))
			row := x.reload(t, job.ID)
			require.Equal(t, models.StatusPending, row.Status, "loss %d", i)
			require.Equal(t, 0, row.Attempts, "loss %d", i)
			require.Equal(t, i, row.LostAttempts, "loss %d", i)
			require.Equal(t, "lease expired: worker lost", row.Error)
		}
		sum, err := x.worker(jobs.Config{}).Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusCompleted, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.Zero(t, row.LostAttempts)
		history, err := x.service.Attempts(context.Background(), "user-1", job.ID)
		require.NoError(t, err)
		require.Len(t, history, 5)
		for i, h := range history {
			require.Equal(t, 1, h.Attempt, "entry %d ran as attempt 1", i)
		}
		require.Equal(t, repeat(string(jobs.AttemptLost), 4, string(jobs.AttemptCompleted)), outcomesOf(t, x, job.ID))
	})
}

// TestAJobLostTooOftenInARowFails: the fifth lost attempt in a row fails
// the job; with MaxLostAttempts 2 the second does.
func TestAJobLostTooOftenInARowFails(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		job := x.create(t, jobs.CreateRequest{})
		for range jobs.DefaultMaxLostAttempts {
			require.Equal(t, 1, loseWorker(t, x, job.ID))
		}
		row := x.reload(t, job.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, "worker lost repeatedly: 5 attempts in a row lost their lease", row.Error)
		require.Equal(t, 5, row.LostAttempts)
		require.NotNil(t, row.CompletedAt)
		require.Equal(t, repeat(string(jobs.AttemptLost), 5), outcomesOf(t, x, job.ID))
		d, err := x.queue.Depth(context.Background())
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d, "a failed job leaves the queue")

		// The bound is the engine's.
		x.eng = x.engine(jobs.Config{MaxLostAttempts: 2})
		other := x.create(t, jobs.CreateRequest{})
		require.Equal(t, 1, loseWorker(t, x, other.ID))
		require.Equal(t, models.StatusPending, x.reload(t, other.ID).Status)
		require.Equal(t, 1, loseWorker(t, x, other.ID))
		row = x.reload(t, other.ID)
		require.Equal(t, models.StatusFailed, row.Status)
		require.Equal(t, "worker lost repeatedly: 2 attempts in a row lost their lease", row.Error)
	})
}

// TestARealFailureEndsTheLostStreak: a lost attempt, then a retryable
// failure, then four more losses: the streak restarted, so the job is
// still pending, with the failure its only counted attempt.
func TestARealFailureEndsTheLostStreak(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.rec.script = func(*models.Job, int) (json.RawMessage, error) { return nil, errors.New("503 upstream") }
		job := x.create(t, jobs.CreateRequest{})
		require.Equal(t, 1, loseWorker(t, x, job.ID))
		w := x.worker(jobs.Config{Backoff: func(int) time.Duration { return time.Second }})
		sum, err := w.Drain(context.Background(), time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Retried)
		row := x.reload(t, job.ID)
		require.Equal(t, 1, row.Attempts, "the real failure counts")
		require.Zero(t, row.LostAttempts, "and ends the streak")
		x.clock.Advance(time.Second)
		_, err = x.queue.PromoteDue(context.Background())
		require.NoError(t, err)
		for range jobs.DefaultMaxLostAttempts - 1 {
			require.Equal(t, 1, loseWorker(t, x, job.ID))
		}
		row = x.reload(t, job.ID)
		require.Equal(t, models.StatusPending, row.Status)
		require.Equal(t, 1, row.Attempts)
		require.Equal(t, jobs.DefaultMaxLostAttempts-1, row.LostAttempts)
		require.Equal(t, []string{"lost", "retried", "lost", "lost", "lost", "lost"}, outcomesOf(t, x, job.ID))
	})
}

// TestReapedJobsGoBehindTheWaitingOnes: a job reaped back to pending runs
// after the jobs of its priority that waited meanwhile.
func TestReapedJobsGoBehindTheWaitingOnes(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		reaped := x.create(t, jobs.CreateRequest{Priority: 5})
		w1 := x.create(t, jobs.CreateRequest{Priority: 5})
		w2 := x.create(t, jobs.CreateRequest{Priority: 5})
		low := x.create(t, jobs.CreateRequest{Priority: 1})
		require.Equal(t, 1, loseWorker(t, x, reaped.ID))
		ids, err := x.queue.Claim(ctx, 4, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{w1.ID, w2.ID, reaped.ID, low.ID}, ids, "at the tail of its priority, ahead of lower ones")
	})
}

// TestReleasedJobsGoBackToTheHead: a job given back at shutdown runs again
// before the jobs of its priority that waited.
func TestReleasedJobsGoBackToTheHead(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		started := make(chan struct{})
		x.registry.MustRegister("blocks", jobs.HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}))
		released := x.create(t, jobs.CreateRequest{Type: "blocks"})
		w1 := x.create(t, jobs.CreateRequest{})
		w2 := x.create(t, jobs.CreateRequest{})
		w := x.worker(jobs.Config{Concurrency: 1})
		done := make(chan jobs.DrainSummary, 1)
		go func() {
			s, _ := w.Drain(ctx, time.Minute)
			done <- s
		}()
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the blocking job did not start")
		}
		over, cancel := context.WithCancel(ctx)
		cancel() // no grace: release at once
		w.Shutdown(over)
		var sum jobs.DrainSummary
		select {
		case sum = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the drain did not end")
		}
		require.Equal(t, 1, sum.Released)
		row := x.reload(t, released.ID)
		require.Equal(t, models.StatusPending, row.Status)
		require.Equal(t, 0, row.Attempts, "a release does not count")
		ids, err := x.queue.Claim(ctx, 3, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{released.ID, w1.ID, w2.ID}, ids, "at the head of its priority")
	})
}

// TestDefaultExpiry: a job without an expiry expires DefaultMaxWait after
// its creation, or after its scheduled time; a WaitLimiter sets its own
// wait; an expiry not after now or after scheduledFor is refused.
func TestDefaultExpiry(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		x := setup(t, b)
		x.registry.MustRegister("brief", briefWaits{})
		now := x.clock.Now()
		job := x.reload(t, x.create(t, jobs.CreateRequest{}).ID)
		require.True(t, job.CreatedAt.Add(jobs.DefaultMaxWait).Equal(*job.ExpiresAt), "%v", job.ExpiresAt)
		at := now.Add(24 * time.Hour)
		sched := x.reload(t, x.create(t, jobs.CreateRequest{ScheduledFor: &at}).ID)
		require.True(t, at.Add(jobs.DefaultMaxWait).Equal(*sched.ExpiresAt), "%v", sched.ExpiresAt)
		brief := x.reload(t, x.create(t, jobs.CreateRequest{Type: "brief"}).ID)
		require.True(t, now.Add(time.Minute).Equal(*brief.ExpiresAt), "%v", brief.ExpiresAt)

		short := x.engine(jobs.Config{DefaultMaxWait: time.Hour}).Service()
		j, _, err := short.Create(context.Background(), jobs.CreateRequest{UserID: "user-1", Type: "record"})
		require.NoError(t, err)
		require.True(t, now.Add(time.Hour).Equal(*j.ExpiresAt), "%v", j.ExpiresAt)

		for _, bad := range []jobs.CreateRequest{
			{ExpiresAt: &now},
			{ScheduledFor: &at, ExpiresAt: ptr(at.Add(-time.Minute))},
		} {
			bad.UserID, bad.Type = "user-1", "record"
			_, _, err := x.service.Create(context.Background(), bad)
			var ve *jobs.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "invalid_expires_at", ve.Code)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// briefWaits is a handler whose jobs may wait a minute.
type briefWaits struct{}

func (briefWaits) Handle(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }
func (briefWaits) MaxWait() time.Duration                                       { return time.Minute }

// TestEngineRefusesANegativeMaxLostAttempts: the bound is validated like
// the other settings.
func TestEngineRefusesANegativeMaxLostAttempts(t *testing.T) {
	_, err := jobs.New(jobs.Config{MaxLostAttempts: -1, DefaultMaxWait: -time.Second})
	require.ErrorContains(t, err, "MaxLostAttempts must not be negative")
	require.ErrorContains(t, err, "DefaultMaxWait must not be negative")
}
