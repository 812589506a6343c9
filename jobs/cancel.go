package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// ErrCancelled is the cause of a handler's context when its job was
// cancelled while it ran (Service.Cancel, POST /api/jobs/:id/cancel, or a
// cancelled ancestor). A handler that wants to tell it from a timeout or a
// shutdown tests the cause:
//
//	if errors.Is(context.Cause(ctx), jobs.ErrCancelled) { ... stop, clean up ... }
//
// Whatever the handler returns then is dropped: the job stays cancelled.
var ErrCancelled = errors.New("job cancelled")

// cancelRetryFor bounds the retries of a cancel's transaction that failed
// on a transient error (a deadlock with a concurrent outcome, a lost
// connection).
const cancelRetryFor = 3 * time.Second

// cancel cancels job id (owner's, when not nil) and its unfinished
// descendants in one transaction, then drops them from the queue and wakes
// the parent of the job when it was the last of its siblings to finish.
// It returns the jobs cancelled, id first; none when id was not
// cancellable.
func (f *finisher) cancel(ctx context.Context, owner *string, id int64) ([]store.CancelledJob, error) {
	var done []store.CancelledJob
	_, err := retryTransient(ctx, time.Now().Add(cancelRetryFor), sleepCtx, func(ctx context.Context) error {
		var err error
		done, err = f.store.CancelTree(ctx, owner, id, f.clock.Now())
		return err
	}, func(try int, wait time.Duration, err error) {
		f.log.Warn("cancel failed; retrying", "job_id", id, "try", try, "in", wait, "err", err)
	})
	if err != nil {
		return nil, err
	}
	if len(done) == 0 {
		return nil, nil
	}
	ids := make(map[int64]bool, len(done))
	for _, c := range done {
		ids[c.ID] = true
	}
	items := make([]finishing, len(done))
	applied := make([]store.Applied, len(done))
	for i, c := range done {
		items[i] = finishing{update: store.Update{Fence: store.Fence{ID: c.ID}, Transition: store.Cancelled(owner)}, typ: c.Type}
		a := store.Applied{Applied: true, Status: models.StatusCancelled, Priority: c.Priority, ParentID: c.ParentID}
		if c.ParentID != nil && ids[*c.ParentID] {
			a.ParentID = nil // its parent is cancelled too: nothing to wake
		}
		applied[i] = a
	}
	f.after(ctx, items, applied)
	return done, nil
}

// interrupt cancels, with cause, the handlers of this worker that hold one
// of the claims fences (jobs cancelled while they ran here), at once
// rather than at the heartbeat's next tick. Their outcomes are dropped.
func (h *heartbeat) interrupt(fences []store.Fence, cause error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range fences {
		l, ok := h.leases[f.ID]
		if !ok || l.fence.Attempt != f.Attempt || !sameLease(l.fence.LeaseID, f.LeaseID) {
			continue
		}
		h.log.Info("job cancelled while running: stopping its handler", "job_id", f.ID, "attempt", f.Attempt)
		h.lose(l, cause)
	}
}

// sameLease reports whether two lease ids may be the same claim's: a nil
// one (a row claimed before lease ids existed) matches any.
func sameLease(a, b *string) bool {
	if a == nil || b == nil {
		return true
	}
	return *a == *b
}

// whichCancelled returns which of ids, jobs whose lease the heartbeat
// just found lost, were cancelled: their handlers are cancelled with
// ErrCancelled, the others' with ErrLeaseLost. A failed look-up counts
// them all as lost.
func (h *heartbeat) whichCancelled(ctx context.Context, ids []int64) map[int64]bool {
	if len(ids) == 0 || h.cancelled == nil {
		return nil
	}
	cancelled, err := h.cancelled(ctx, ids)
	if err != nil {
		h.log.Debug("could not tell cancelled jobs from lost ones", "count", len(ids), "err", err)
	}
	out := make(map[int64]bool, len(cancelled))
	for _, id := range cancelled {
		out[id] = true
	}
	return out
}

// cancelledWhileRunning reports whether a job whose outcome was fenced out
// was cancelled (rather than reaped or claimed again), to log it as such.
func (w *Worker) cancelledWhileRunning(id int64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ids, err := w.store.CancelledAmong(ctx, []int64{id})
	return err == nil && len(ids) == 1
}
