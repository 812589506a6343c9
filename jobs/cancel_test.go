package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// blocker is the job type "block": its handler runs until its context is
// cancelled, notes when and why, and then returns a result anyway (which
// must never land on a cancelled job).
type blocker struct {
	mu      sync.Mutex
	started map[int64]chan struct{}
	stopped map[int64]chan struct{}
	causes  map[int64]error
	at      map[int64]time.Time
}

func newBlocker(x *bundle) *blocker {
	b := &blocker{started: map[int64]chan struct{}{}, stopped: map[int64]chan struct{}{}, causes: map[int64]error{}, at: map[int64]time.Time{}}
	x.registry.MustRegister("block", b)
	return b
}

// chans returns job id's started and stopped channels.
func (b *blocker) chans(id int64) (chan struct{}, chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started[id] == nil {
		b.started[id], b.stopped[id] = make(chan struct{}), make(chan struct{})
	}
	return b.started[id], b.stopped[id]
}

func (b *blocker) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	started, stopped := b.chans(job.ID)
	close(started)
	select {
	case <-ctx.Done():
	case <-time.After(time.Minute):
	}
	b.mu.Lock()
	b.causes[job.ID], b.at[job.ID] = context.Cause(ctx), time.Now()
	b.mu.Unlock()
	close(stopped)
	return json.RawMessage(`{"late":true}`), nil
}

// waitStarted waits until job id's handler runs.
func (b *blocker) waitStarted(t *testing.T, id int64) {
	t.Helper()
	started, _ := b.chans(id)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("job %d did not start", id)
	}
}

// waitStopped waits until job id's handler saw its context end, and
// returns the cause and when.
func (b *blocker) waitStopped(t *testing.T, id int64, within time.Duration) (error, time.Time) {
	t.Helper()
	_, stopped := b.chans(id)
	select {
	case <-stopped:
	case <-time.After(within):
		t.Fatalf("job %d's handler still runs %s after its cancel", id, within)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.causes[id], b.at[id]
}

// drainAsync runs one drain of w in the background.
func drainAsync(w *jobs.Worker) <-chan jobs.DrainSummary {
	out := make(chan jobs.DrainSummary, 1)
	go func() {
		sum, _ := w.Drain(context.Background(), time.Minute)
		out <- sum
	}()
	return out
}

func waitDrain(t *testing.T, c <-chan jobs.DrainSummary) jobs.DrainSummary {
	t.Helper()
	select {
	case sum := <-c:
		return sum
	case <-time.After(30 * time.Second):
		t.Fatal("the drain did not end")
		return jobs.DrainSummary{}
	}
}

// requireCancelledWhileRunning checks a job cancelled while it ran: the
// row is cancelled with no lease and no result, and its history ends with
// a cancelled attempt.
func requireCancelledWhileRunning(t *testing.T, x *bundle, id int64) {
	t.Helper()
	row := x.reload(t, id)
	require.Equal(t, models.StatusCancelled, row.Status)
	require.NotNil(t, row.CompletedAt)
	require.Nil(t, row.LeaseID)
	require.Nil(t, row.LeaseExpiresAt)
	require.Empty(t, row.Result, "the handler's late result is not written over the cancel")
	history, err := x.service.Attempts(context.Background(), "user-1", id)
	require.NoError(t, err)
	require.Len(t, history, 1)
	require.Equal(t, "cancelled", history[0].Outcome)
	require.Equal(t, row.Attempts, history[0].Attempt)
	require.NotNil(t, history[0].StartedAt)
}

// TestCancelRunningJobInProcess: a job running in this process stops at
// once when it is cancelled here (the lease is an hour: no heartbeat
// could do it), with ErrCancelled as its context's cause.
func TestCancelRunningJobInProcess(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		bl := newBlocker(x)
		eng := x.engine(jobs.Config{LeaseDuration: time.Hour})
		job := x.create(t, jobs.CreateRequest{Type: "block"})
		drained := drainAsync(eng.Worker())
		bl.waitStarted(t, job.ID)

		got, err := eng.Service().Cancel(ctx, "user-1", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCancelled, got.Status)
		cause, _ := bl.waitStopped(t, job.ID, 10*time.Second)
		require.ErrorIs(t, cause, jobs.ErrCancelled)
		sum := waitDrain(t, drained)
		require.Equal(t, 1, sum.Skipped, "the dropped outcome is counted")
		require.Zero(t, sum.Completed+sum.Failed+sum.Retried)
		requireCancelledWhileRunning(t, x, job.ID)
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d, "the job left the queue")
	})
}

// TestCancelRunningJobElsewhere: a job cancelled through another instance
// (another engine on the same database and Redis) stops at its worker's
// next heartbeat.
func TestCancelRunningJobElsewhere(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		bl := newBlocker(x)
		const lease = 1500 * time.Millisecond // a heartbeat every 500 ms
		w := x.worker(jobs.Config{LeaseDuration: lease})
		job := x.create(t, jobs.CreateRequest{Type: "block"})
		drained := drainAsync(w)
		bl.waitStarted(t, job.ID)

		cancelledAt := time.Now()
		_, err := x.service.Cancel(ctx, "user-1", job.ID)
		require.NoError(t, err)
		cause, at := bl.waitStopped(t, job.ID, 10*time.Second)
		require.ErrorIs(t, cause, jobs.ErrCancelled)
		// One interval (lease/3), with as much again of slack for a busy
		// machine: the lease itself would have run out.
		require.Less(t, at.Sub(cancelledAt), lease*2/3, "the handler stopped within about one heartbeat")
		sum := waitDrain(t, drained)
		require.Equal(t, 1, sum.Skipped)
		requireCancelledWhileRunning(t, x, job.ID)
	})
}

// withdrawals is a Publisher that records the messages it withdraws.
type withdrawals struct {
	mu   sync.Mutex
	gone []string
}

func (p *withdrawals) PublishAt(context.Context, int64, time.Time) (string, error) {
	return "", errors.New("not used")
}

func (p *withdrawals) Cancel(_ context.Context, id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = append(p.gone, id)
	return nil
}

func (p *withdrawals) Trigger(context.Context, time.Duration) error { return nil }

// TestCancelParentCancelsItsUnfinishedChildren: cancelling a running
// parent (a carousel whose items are children) cancels its pending,
// scheduled and running children and a grandchild, withdraws the
// scheduled one's delivery, stops every running handler, and leaves the
// finished child as it was.
func TestCancelParentCancelsItsUnfinishedChildren(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		bl := newBlocker(x)
		const lease = 900 * time.Millisecond
		// Each running job has a worker of its own with one slot, so no
		// drain claims the children left pending.
		parent := x.create(t, jobs.CreateRequest{Type: "block"})
		parentDrain := drainAsync(x.worker(jobs.Config{Concurrency: 1, LeaseDuration: lease}))
		bl.waitStarted(t, parent.ID)
		child := func(typ string, of int64, at *time.Time) models.Job {
			return *x.create(t, jobs.CreateRequest{Type: typ, ParentID: &of, ScheduledFor: at})
		}
		done := child("record", parent.ID, nil)
		_, err := x.worker(jobs.Config{Concurrency: 1}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		doneRow := x.reload(t, done.ID)
		require.Equal(t, models.StatusCompleted, doneRow.Status)
		running := child("block", parent.ID, nil)
		childDrain := drainAsync(x.worker(jobs.Config{Concurrency: 1, LeaseDuration: lease}))
		bl.waitStarted(t, running.ID)
		grandchild := child("record", running.ID, nil)
		pending := child("record", parent.ID, nil)
		later := x.clock.Now().Add(time.Hour)
		scheduled := child("record", parent.ID, &later)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", scheduled.ID).Update("qstash_message_id", "msg-scheduled").Error)
		other := x.create(t, jobs.CreateRequest{ScheduledFor: &later}) // not in the tree

		pub := &withdrawals{}
		svc := x.engine(jobs.Config{Publisher: pub, DisableTriggers: true}).Service()
		_, err = svc.Cancel(ctx, "user-2", parent.ID)
		require.ErrorIs(t, err, jobs.ErrNotFound, "another user's job")
		got, err := svc.Cancel(ctx, "user-1", parent.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCancelled, got.Status)

		for _, id := range []int64{parent.ID, running.ID} {
			cause, _ := bl.waitStopped(t, id, 10*time.Second)
			require.ErrorIs(t, cause, jobs.ErrCancelled, "job %d", id)
		}
		waitDrain(t, parentDrain)
		waitDrain(t, childDrain)
		requireCancelledWhileRunning(t, x, parent.ID)
		requireCancelledWhileRunning(t, x, running.ID)
		for _, id := range []int64{pending.ID, scheduled.ID, grandchild.ID} {
			row := x.reload(t, id)
			require.Equal(t, models.StatusCancelled, row.Status, "job %d", id)
			require.NotNil(t, row.CompletedAt)
		}
		require.Equal(t, doneRow, x.reload(t, done.ID), "the finished child is untouched")
		require.Equal(t, models.StatusScheduled, x.reload(t, other.ID).Status)
		require.Equal(t, []string{"msg-scheduled"}, pub.gone, "the scheduled child's delivery is withdrawn")
		members, err := x.queue.Members(ctx)
		require.NoError(t, err)
		require.Empty(t, members, "the cancelled jobs left the queue")

		_, err = svc.Cancel(ctx, "user-1", done.ID)
		require.ErrorIs(t, err, jobs.ErrNotCancellable)
		require.ErrorContains(t, err, "completed")
	})
}

// TestACancelledRunningChildWakesItsParent: a child cancelled while it
// runs is a final outcome for its waiting parent, which runs again at once.
func TestACancelledRunningChildWakesItsParent(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		bl := newBlocker(x)
		eng := x.engine(jobs.Config{LeaseDuration: time.Hour})
		parent := x.create(t, jobs.CreateRequest{})
		later := x.clock.Now().Add(time.Hour)
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", parent.ID).Update("next_run_at", later).Error)
		require.NoError(t, x.queue.Remove(ctx, parent.ID))
		require.NoError(t, x.queue.EnqueueAt(ctx, later, jobs.Item{ID: parent.ID}))
		row := x.reload(t, parent.ID)
		child, err := x.service.CreateChild(ctx, &row, 0, jobs.ChildSpec{Type: "block", Payload: json.RawMessage(`{}`)})
		require.NoError(t, err)
		drained := drainAsync(eng.Worker())
		bl.waitStarted(t, child.ID)
		require.False(t, runnableNow(t, x, parent.ID), "the parent sleeps while its child runs")

		_, err = eng.Service().Cancel(ctx, "user-1", child.ID)
		require.NoError(t, err)
		bl.waitStopped(t, child.ID, 10*time.Second)
		waitDrain(t, drained) // it may already run the woken parent
		requireCancelledWhileRunning(t, x, child.ID)
		_, err = x.worker(jobs.Config{}).Drain(ctx, time.Minute)
		require.NoError(t, err)
		row = x.reload(t, parent.ID)
		require.Equal(t, models.StatusCompleted, row.Status, "the cancelled child woke its parent, which ran (else it sleeps for an hour)")
	})
}

// TestAChildOfACancelledParentIsCancelled: a child created after its
// parent's cancel read the parent's children (a handler spawning while the
// cancel commits) is cancelled as it is created, and its creator told.
func TestAChildOfACancelledParentIsCancelled(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		parent := x.create(t, jobs.CreateRequest{})
		row := x.reload(t, parent.ID)
		_, err := x.service.Cancel(ctx, "user-1", parent.ID)
		require.NoError(t, err)
		_, err = x.service.CreateChild(ctx, &row, 0, jobs.ChildSpec{Type: "record", Payload: json.RawMessage(`{}`)})
		require.ErrorIs(t, err, jobs.ErrCancelled)
		var kids []models.Job
		require.NoError(t, b.DB.Gorm.Where("parent_id = ?", parent.ID).Find(&kids).Error)
		require.Len(t, kids, 1)
		require.Equal(t, models.StatusCancelled, kids[0].Status)
		d, err := x.queue.Depth(ctx)
		require.NoError(t, err)
		require.Equal(t, jobs.Depth{}, d)
	})
}

// TestCancelRacesCompletion cancels jobs just as they complete, through
// the engine that runs them and through another one: each ends either
// completed (with its result, the cancel refused) or cancelled (the cancel
// accepted, no result, no completed attempt), never both.
func TestCancelRacesCompletion(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		x := setup(t, b)
		running := make(chan int64, 1)
		x.rec.script = func(job *models.Job, call int) (json.RawMessage, error) {
			running <- job.ID
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
			return json.RawMessage(`{"done":true}`), nil
		}
		w := x.eng.Worker()
		services := []*jobs.Service{x.service, x.engine(jobs.Config{}).Service()}
		const n = 16
		outcomes := map[models.Status]int{}
		for i := range n {
			job := x.create(t, jobs.CreateRequest{})
			drained := drainAsync(w)
			select {
			case <-running:
			case <-time.After(30 * time.Second):
				t.Fatal("the job did not start")
			}
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Microsecond)
			_, cerr := services[i%2].Cancel(ctx, "user-1", job.ID)
			waitDrain(t, drained)
			row := x.reload(t, job.ID)
			history, err := x.service.Attempts(ctx, "user-1", job.ID)
			require.NoError(t, err)
			outcomes[row.Status]++
			require.Len(t, history, 1)
			switch row.Status {
			case models.StatusCompleted:
				require.ErrorIs(t, cerr, jobs.ErrNotCancellable)
				require.JSONEq(t, `{"done":true}`, string(row.Result))
				require.Equal(t, "completed", history[0].Outcome)
			case models.StatusCancelled:
				require.NoError(t, cerr)
				require.Empty(t, row.Result, "a cancelled job keeps no result")
				require.Equal(t, "cancelled", history[0].Outcome, "a cancelled job has no completed attempt")
			default:
				t.Fatalf("job %d ended %s", job.ID, row.Status)
			}
			d, err := x.queue.Depth(ctx)
			require.NoError(t, err)
			require.Equal(t, jobs.Depth{}, d, "job %d left in the queue", job.ID)
		}
		t.Logf("outcomes: %v", outcomes)
	})
}
