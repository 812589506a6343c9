package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TestRetryRunsAFailedJobAgain fails a job for good, retries it, and
// checks that it runs again, with a fresh attempt budget, to completion.
func TestRetryRunsAFailedJobAgain(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		var notified atomic.Int32
		eng := x.engine(jobs.Config{})
		jobs.SetNotify(eng, func(context.Context) { notified.Add(1) })
		svc := eng.Service()
		x.rec.script = func(_ *models.Job, call int) (json.RawMessage, error) {
			if call == 1 {
				return nil, jobs.Permanent(errors.New("provider said no"))
			}
			return json.RawMessage(`{"ok":true}`), nil
		}
		job := x.create(t, jobs.CreateRequest{MaxAttempts: 2})
		w := x.worker(jobs.Config{})
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Failed)
		failed := x.reload(t, job.ID)
		require.Equal(t, models.StatusFailed, failed.Status)
		require.Equal(t, "provider said no", failed.Error)
		require.NotNil(t, failed.CompletedAt)

		// Only the owner may retry.
		_, err = svc.Retry(ctx, "someone-else", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotFound)
		_, err = svc.Retry(ctx, "user-1", job.ID+1000)
		require.ErrorIs(t, err, jobs.ErrNotFound)
		require.Equal(t, models.StatusFailed, x.reload(t, job.ID).Status)
		require.Zero(t, notified.Load())

		x.clock.Advance(time.Minute)
		got, err := svc.Retry(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, got.Status)
		require.Zero(t, got.Attempts, "a fresh attempt budget")
		require.Empty(t, got.Error)
		require.Nil(t, got.Result)
		require.Nil(t, got.CompletedAt)
		require.True(t, got.NextRunAt.Equal(x.clock.Now()), "due now")
		require.True(t, got.UpdatedAt.Equal(x.clock.Now()))
		require.Equal(t, 2, got.MaxAttempts)
		require.EqualValues(t, 1, notified.Load(), "a worker is asked to start soon")
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{Pending: 1}, d)

		// Retrying again is a conflict: the job is pending now.
		again, err := svc.Retry(ctx, "user-1", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotRetryable)
		require.NotNil(t, again, "the job in its current state")
		require.Equal(t, models.StatusPending, again.Status)
		require.EqualValues(t, 1, notified.Load())

		sum, err = w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 1, sum.Completed)
		done := x.reload(t, job.ID)
		require.Equal(t, models.StatusCompleted, done.Status)
		require.Equal(t, 1, done.Attempts, "attempts count from the retry")
		require.JSONEq(t, `{"ok":true}`, string(done.Result))
		calls, _, overlapped := x.rec.snapshot()
		require.Equal(t, 2, calls[job.ID])
		require.Empty(t, overlapped)

		// A completed job cannot be retried.
		_, err = svc.Retry(ctx, "user-1", job.ID)
		require.ErrorIs(t, err, jobs.ErrNotRetryable)
		require.Equal(t, models.StatusCompleted, x.reload(t, job.ID).Status)
	})
}

// TestRetryOnlyFailedJobs checks every other status is refused and left
// as it was.
// TestRetryRunsACancelledJobAgain: a cancelled job, even one cancelled
// while it ran, is pending again with a fresh budget and runs.
func TestRetryRunsACancelledJobAgain(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		job := x.create(t, jobs.CreateRequest{})
		// As if it had been cancelled while running its second attempt,
		// after a lost one.
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", job.ID).
			Updates(map[string]any{"attempts": 2, "lost_attempts": 1}).Error)
		_, err := x.service.Cancel(ctx, "user-1", job.ID)
		require.NoError(t, err)
		got, err := x.service.Retry(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, got.Status)
		require.Zero(t, got.Attempts)
		require.Zero(t, got.LostAttempts)
		require.Nil(t, got.CompletedAt)
	})
}

func TestRetryOnlyFailedOrCancelledJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		pending := x.create(t, jobs.CreateRequest{})
		at := x.clock.Now().Add(time.Hour)
		scheduled := x.create(t, jobs.CreateRequest{ScheduledFor: &at})
		processing := x.create(t, jobs.CreateRequest{})
		completed := x.create(t, jobs.CreateRequest{})
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", processing.ID).
			Updates(map[string]any{"status": models.StatusProcessing, "attempts": 1}).Error)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", completed.ID).
			Updates(map[string]any{"status": models.StatusCompleted, "attempts": 1}).Error)
		for _, id := range []int64{pending.ID, scheduled.ID, processing.ID, completed.ID} {
			before := x.reload(t, id)
			got, err := x.service.Retry(ctx, "user-1", id)
			require.ErrorIs(t, err, jobs.ErrNotRetryable, "status %s", before.Status)
			require.Equal(t, before.Status, got.Status)
			require.Equal(t, before, x.reload(t, id), "a refused retry changes nothing")
		}
	})
}

// TestRetryEnqueueFailureStillRuns: the row is the truth; when Redis is
// down the retried job is pending and the reconciler enqueues it.
func TestRetryEnqueueFailureStillRuns(t *testing.T) {
	ctx := context.Background()
	b := testenv.Embedded(t)
	x := setup(t, b)
	job := x.create(t, jobs.CreateRequest{})
	require.NoError(t, x.queue.Remove(ctx, job.ID))
	require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", job.ID).
		Updates(map[string]any{"status": models.StatusFailed, "attempts": 3, "error": "gone"}).Error)

	b.Mini.SetError("LOADING Redis is loading the dataset in memory")
	got, err := x.service.Retry(ctx, "user-1", job.ID)
	b.Mini.SetError("")
	require.NoError(t, err)
	require.Equal(t, models.StatusPending, got.Status)

	sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
	require.NoError(t, err)
	require.Equal(t, 1, sum.Reenqueued)
	require.Equal(t, 1, sum.Completed)
	require.Equal(t, models.StatusCompleted, x.reload(t, job.ID).Status)
}

// TestListFailedJobs lists a user's failed jobs, the ones to retry.
func TestListFailedJobs(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		x.rec.script = func(job *models.Job, _ int) (json.RawMessage, error) {
			if job.Priority == 1 {
				return nil, jobs.Permanent(errors.New("bad input"))
			}
			return nil, nil
		}
		var failed []int64
		for i := range 6 {
			j := x.create(t, jobs.CreateRequest{Priority: i % 2})
			if i%2 == 1 {
				failed = append([]int64{j.ID}, failed...) // newest first
			}
		}
		x.create(t, jobs.CreateRequest{UserID: "user-2", Priority: 1})
		_, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.EqualValues(t, 4, x.countStatus(t, models.StatusFailed))

		page, err := x.service.List(ctx, jobs.ListRequest{UserID: "user-1", Status: models.StatusFailed})
		require.NoError(t, err)
		var ids []int64
		for _, j := range page.Jobs {
			require.Equal(t, models.StatusFailed, j.Status)
			require.Equal(t, "bad input", j.Error)
			ids = append(ids, j.ID)
		}
		require.Equal(t, failed, ids)

		_, err = x.service.Retry(ctx, "user-1", failed[0])
		require.NoError(t, err)
		page, err = x.service.List(ctx, jobs.ListRequest{UserID: "user-1", Status: models.StatusFailed})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 2, "a retried job is no longer failed")
	})
}

// fanout is a parent type like a carousel: it spawns two record children
// and completes once both completed, failing when one did not.
func registerFanout(x *bundle) {
	x.registry.MustRegister("fanout", jobs.HandlerFunc(func(ctx context.Context, _ *models.Job) (json.RawMessage, error) {
		specs := []jobs.ChildSpec{{Type: "record", Payload: json.RawMessage(`{}`)}, {Type: "record", Payload: json.RawMessage(`{}`)}}
		if _, err := jobs.SpawnChildren(ctx, specs); err != nil {
			return nil, err
		}
		children, err := jobs.AwaitChildren(ctx, time.Hour)
		if err != nil {
			return nil, err
		}
		for _, c := range children {
			if c.Status != models.StatusCompleted {
				return nil, jobs.Permanent(fmt.Errorf("child %d is %s", c.ID, c.Status))
			}
		}
		return json.RawMessage(`{"ok":true}`), nil
	}))
}

// fanoutWithChildren creates a fanout job and, as its first run would, its
// two children; it returns the parent and the children's ids.
func fanoutWithChildren(t *testing.T, x *bundle) (*models.Job, []int64) {
	t.Helper()
	parent := x.create(t, jobs.CreateRequest{Type: "fanout"})
	row := x.reload(t, parent.ID)
	var kids []int64
	for i := 0; i < 2; i++ {
		c, err := x.service.CreateChild(context.Background(), &row, i, jobs.ChildSpec{Type: "record", Payload: json.RawMessage(`{}`)})
		require.NoError(t, err)
		kids = append(kids, c.ID)
	}
	return parent, kids
}

// TestRetryOfACancelledParentRunsItsChildrenAgain: a parent cancelled with
// its children, then retried, finds its children again by their keys; they
// start again with it, so the whole tree completes.
func TestRetryOfACancelledParentRunsItsChildrenAgain(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		registerFanout(x)
		parent, kids := fanoutWithChildren(t, x)
		_, err := x.service.Cancel(ctx, "user-1", parent.ID)
		require.NoError(t, err)
		for _, id := range kids {
			require.Equal(t, models.StatusCancelled, x.reload(t, id).Status)
		}

		got, err := x.service.Retry(ctx, "user-1", parent.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, got.Status)
		for _, id := range kids {
			row := x.reload(t, id)
			require.Equal(t, models.StatusPending, row.Status, "child %d starts again with its parent", id)
			require.Nil(t, row.CompletedAt)
		}
		sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 3, sum.Completed, "%+v", sum)
		for _, id := range append([]int64{parent.ID}, kids...) {
			require.Equal(t, models.StatusCompleted, x.reload(t, id).Status, "job %d", id)
		}
	})
}

// TestRetryOfAFailedParentKeepsItsCompletedChildren: retrying a parent
// whose child failed starts the failed child again and leaves the
// completed one as it was; a passed expiry is renewed.
func TestRetryOfAFailedParentKeepsItsCompletedChildren(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		registerFanout(x)
		parent, kids := fanoutWithChildren(t, x)
		now := x.clock.Now()
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", kids[0]).
			Updates(map[string]any{"status": models.StatusCompleted, "attempts": 1, "completed_at": now}).Error)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id IN ?", []int64{kids[1], parent.ID}).
			Updates(map[string]any{"status": models.StatusFailed, "attempts": 3, "error": "boom", "completed_at": now}).Error)
		// The parent's expiry passed while it sat failed.
		x.clock.Advance(100 * time.Hour)
		before := x.reload(t, kids[0])

		_, err := x.service.Retry(ctx, "user-1", parent.ID)
		require.NoError(t, err)
		require.Equal(t, before, x.reload(t, kids[0]), "the completed child is untouched")
		again := x.reload(t, kids[1])
		require.Equal(t, models.StatusPending, again.Status)
		require.Zero(t, again.Attempts)
		p := x.reload(t, parent.ID)
		require.NotNil(t, p.ExpiresAt)
		require.True(t, p.ExpiresAt.After(x.clock.Now()), "a passed expiry is renewed: %s", p.ExpiresAt)
		require.Equal(t, jobs.DefaultMaxWait, p.ExpiresAt.Sub(x.clock.Now()), "as far from now as it was from the start")

		sum, err := x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, sum.Completed, "the failed child and the parent: %+v", sum)
		require.Equal(t, models.StatusCompleted, x.reload(t, parent.ID).Status)
	})
}
