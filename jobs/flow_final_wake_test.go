package jobs_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// asleepParent makes a job that waits for its children (as AwaitChildren
// leaves it: pending, due in an hour, delayed in the queue) and gives it n
// pending children that may run once.
func asleepParent(t *testing.T, x *bundle, n int) (models.Job, []models.Job) {
	t.Helper()
	ctx := context.Background()
	parent := x.create(t, jobs.CreateRequest{})
	later := x.clock.Now().Add(time.Hour)
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("id = ?", parent.ID).Update("next_run_at", later).Error)
	require.NoError(t, x.queue.EnqueueAt(ctx, later, jobs.Item{ID: parent.ID}))
	row := x.reload(t, parent.ID)
	children := make([]models.Job, n)
	for i := range children {
		c, err := x.service.CreateChild(ctx, &row, i, jobs.ChildSpec{Type: "record", Payload: json.RawMessage(`{}`), MaxAttempts: 1})
		require.NoError(t, err)
		children[i] = *c
	}
	return row, children
}

// runnableNow reports whether the job is in the queue's pending set once
// the jobs due by now are promoted: the next drain claims it.
func runnableNow(t *testing.T, x *bundle, id int64) bool {
	t.Helper()
	ctx := context.Background()
	_, err := x.queue.PromoteDue(ctx)
	require.NoError(t, err)
	members, err := x.queue.Members(ctx)
	require.NoError(t, err)
	return members[id] == "pending" && !x.reload(t, id).NextRunAt.After(x.clock.Now())
}

// TestAReapedChildWakesItsParent: a child whose worker was lost for the
// MaxLostAttempts-th time in a row fails when it is reaped; that final
// state wakes its waiting parent at once, as a child that finishes in a
// worker does.
func TestAReapedChildWakesItsParent(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		parent, children := asleepParent(t, x, 1)
		// A worker claims the child and dies, as four did before.
		ids, err := x.queue.Claim(ctx, 1, time.Minute)
		require.NoError(t, err)
		require.Equal(t, []int64{children[0].ID}, ids)
		now := x.clock.Now().UTC()
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", children[0].ID).
			Updates(map[string]any{"status": models.StatusProcessing, "attempts": 1, "lost_attempts": jobs.DefaultMaxLostAttempts - 1,
				"started_at": now, "lease_expires_at": now.Add(-time.Second)}).Error)
		require.False(t, runnableNow(t, x, parent.ID), "the parent sleeps while its child runs")

		var notified atomic.Int32
		jobs.SetNotify(x.eng, func(context.Context) { notified.Add(1) })
		rec := jobs.ReconcilerOf(x.eng)
		n, err := rec.Reap(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		child := x.reload(t, children[0].ID)
		require.Equal(t, models.StatusFailed, child.Status, "lost too many times in a row")
		require.Contains(t, child.Error, "worker lost repeatedly")
		require.True(t, runnableNow(t, x, parent.ID), "the reaped child woke its parent")
		require.EqualValues(t, 1, notified.Load(), "a worker call was asked for")
	})
}

// TestACancelledChildWakesItsParent: cancelling a parent's last unfinished
// child wakes the parent at once; cancelling one whose sibling still waits
// leaves it asleep.
func TestACancelledChildWakesItsParent(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		var notified atomic.Int32
		jobs.SetNotify(x.eng, func(context.Context) { notified.Add(1) })
		parent, children := asleepParent(t, x, 2)
		notified.Store(0) // creating the children asked for a worker call

		_, err := x.service.Cancel(ctx, "user-1", children[0].ID)
		require.NoError(t, err)
		require.False(t, runnableNow(t, x, parent.ID), "a sibling still waits: the parent sleeps")
		require.Zero(t, notified.Load())

		job, err := x.service.Cancel(ctx, "user-1", children[1].ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCancelled, job.Status)
		require.True(t, runnableNow(t, x, parent.ID), "the last child's cancel woke its parent")
		require.EqualValues(t, 1, notified.Load(), "a worker call was asked for")
	})
}
