package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// finishing is one transition handed to the finisher, with what it needs
// to do after the write.
type finishing struct {
	update store.Update
	// typ is the job's type, for the metrics.
	typ string
	// wakeSelf marks a snooze that waits for the job's children: once it
	// is recorded the job is woken at once if they all finished meanwhile.
	wakeSelf bool
}

// fenceOf is the claim a running job's writes must hold.
func fenceOf(job *models.Job) store.Fence {
	return store.Fence{ID: job.ID, Attempt: job.Attempts, LeaseID: job.LeaseID}
}

// finisher is the one path after a job's state changes, wherever the change
// comes from (a worker, the reaper, a cancel): it applies the transitions
// through the store in one transaction, then updates the queue and wakes
// the parents of the children that reached a final state.
type finisher struct {
	store  *store.Store
	queue  *redisQueue
	clock  Clock
	log    *slog.Logger
	notify func(ctx context.Context)
	// wake, when set, arranges a drain at each time jobs were put back to
	// run at (see wakeups.At); it does not block on I/O.
	wake func(ctx context.Context, times ...time.Time)
	// metrics counts the applied transitions; never nil once the engine
	// is built (see metricsOr).
	metrics Metrics
}

// apply applies items and reports, in order, what became of each. Redis
// and parent wakes follow the committed write; their failures are logged
// only (the reconciler repairs the queue, a parent's poll wakes it).
func (f *finisher) apply(ctx context.Context, items []finishing) ([]store.Applied, error) {
	updates := make([]store.Update, len(items))
	for i, it := range items {
		updates[i] = it.update
	}
	applied, err := f.store.Apply(ctx, updates)
	if err != nil {
		return nil, err
	}
	f.after(ctx, items, applied)
	return applied, nil
}

// after updates the queue for the applied transitions, then wakes parents.
//
// Where a job that runs again now goes in its priority depends on why it
// stopped. A job released at shutdown goes to the head: it is innocent,
// and its stop was planned. A job reaped back to pending (its worker was
// lost) goes to the tail, behind the jobs that waited, with a fresh
// sequence as a new job gets: whatever killed or stalled its worker may
// strike again, and at the head the same few jobs would absorb every crash
// (each retaken by the next worker first). At the tail a crash-prone or
// unlucky job waits its turn, and the bound on lost attempts in a row
// (MaxLostAttempts) catches a job that kills its worker every time.
func (f *finisher) after(ctx context.Context, items []finishing, applied []store.Applied) {
	recordFinished(f.metrics, items, applied)
	var (
		ack     []int64
		release []queueItem
		requeue []queueItem
		later   = map[time.Time][]queueItem{}
		wake    []int64
		waking  = map[int64]bool{}
	)
	addWake := func(id int64) {
		if !waking[id] {
			waking[id] = true
			wake = append(wake, id)
		}
	}
	for i, it := range items {
		a := applied[i]
		if !a.Applied {
			continue
		}
		id := it.update.Fence.ID
		item := queueItem{ID: id, Priority: a.Priority}
		switch it.update.Transition.Kind() {
		case store.KindRetry, store.KindDeferred, store.KindSnoozed:
			at := it.update.Transition.At()
			later[at] = append(later[at], item)
		case store.KindReleased:
			release = append(release, item)
		case store.KindCancelled:
			if err := f.queue.Remove(ctx, id); err != nil {
				// Harmless: a claimed cancelled job is skipped by the worker.
				f.log.Warn("cancelled job left in the queue", "job_id", id, "err", err)
			}
		case store.KindLost:
			if a.Status == models.StatusPending {
				requeue = append(requeue, item)
			} else {
				ack = append(ack, id)
			}
		default: // completed, failed
			if a.Status == models.StatusPending {
				release = append(release, item)
			} else {
				ack = append(ack, id)
			}
		}
		if a.Status.Finished() && a.ParentID != nil {
			addWake(*a.ParentID)
		}
		if it.wakeSelf {
			addWake(id)
		}
	}
	if err := f.queue.Ack(ctx, ack...); err != nil {
		f.log.Warn("jobs recorded but not acknowledged in the queue; the reconciler will repair it", "count", len(ack), "err", err)
	}
	if err := f.queue.Release(ctx, release...); err != nil {
		f.log.Warn("jobs returned to pending but not re-enqueued; the reconciler will enqueue them", "count", len(release), "err", err)
	}
	if err := f.queue.Requeue(ctx, requeue...); err != nil {
		f.log.Warn("reaped jobs returned to pending but not re-enqueued; the reconciler will enqueue them", "count", len(requeue), "err", err)
	}
	due := make([]time.Time, 0, len(later))
	for at, its := range later {
		if err := f.queue.EnqueueAt(ctx, at, its...); err != nil {
			f.log.Warn("jobs recorded but not queued for their next run; the reconciler will queue them", "count", len(its), "err", err)
		}
		due = append(due, at)
	}
	f.wakeAt(ctx, due...)
	for _, id := range wake {
		f.wakeIfChildrenDone(ctx, id)
	}
}

// wakeAt arranges a drain at each of times, when the finisher has a wake.
func (f *finisher) wakeAt(ctx context.Context, times ...time.Time) {
	if f.wake != nil && len(times) > 0 {
		f.wake(ctx, times...)
	}
}

// wakeIfChildrenDone makes a waiting parent run now, once every one of its
// children has finished. Both ends call it: a child after its final
// outcome is recorded, and the parent after its snooze is recorded. Each
// call runs after its own write committed, so whichever of the two comes
// last sees the other's write and wakes the parent: the wake is never lost
// and never early (a child whose siblings still run leaves the parent
// asleep, so the parent waits once, not once per child).
func (f *finisher) wakeIfChildrenDone(ctx context.Context, parentID int64) {
	// Queue the parent when its row says it is due, whoever made it so:
	// the other end may have set next_run_at while this end's own queue
	// write (the snooze's delay) was still to come.
	parent, err := f.store.WakeIfChildrenDone(ctx, parentID, f.clock.Now())
	if err != nil {
		f.log.Warn("parent not woken; it runs at its next poll", "parent_id", parentID, "err", err)
		return
	}
	if parent == nil {
		return
	}
	if err := f.queue.EnqueueAt(ctx, parent.NextRunAt, itemOf(parent)); err != nil {
		f.log.Warn("parent not re-queued; the reconciler will", "parent_id", parent.ID, "err", err)
		return
	}
	if f.notify != nil {
		f.notify(ctx)
	}
}
