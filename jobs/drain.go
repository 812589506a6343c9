package jobs

// The drain: the claim loop, its budget and slots, and its completer.

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// Drain reaps expired leases, promotes due jobs, then claims and runs jobs,
// up to Concurrency at a time, until the queue is empty, Shutdown begins,
// or the remaining budget cannot fit another job's timeout (the first batch
// is always claimed). Jobs already running run to their end (each is
// bounded by its timeout), so a drain returns within about its budget. When
// it ends with work left it calls Notify, so a backlog drains continuously.
// Cancelling ctx stops claiming and cancels the running handlers; their
// attempts are recorded as failures to retry.
func (w *Worker) Drain(ctx context.Context, budget time.Duration) (DrainSummary, error) {
	start := time.Now()
	var sum DrainSummary
	if w.cfg.reconciler != nil {
		reaped, err := w.cfg.reconciler.Reap(ctx)
		if err != nil {
			w.log.Warn("reap failed", "err", err)
		}
		sum.Reaped = reaped
		res, err := w.cfg.reconciler.RunIfDue(ctx)
		if err != nil {
			w.log.Warn("reconcile failed", "err", err)
		}
		sum.Reenqueued = res.Enqueued
	}
	err := w.drain(ctx, start.Add(budget), budget, &sum)
	sum.DurationMs = time.Since(start).Milliseconds()
	return sum, err
}

// drain is Drain after the reap: it claims and runs jobs until the queue
// is empty, Shutdown begins or deadline leaves too little room, recording
// what it did in sum.
func (w *Worker) drain(ctx context.Context, deadline time.Time, budget time.Duration, sum *DrainSummary) error {
	// Claim only jobs that can finish within the budget; when even the
	// longest timeout exceeds the whole budget, claim until its end.
	reserve := w.maxTimeout()
	if reserve >= budget {
		reserve = 0
	}
	promoted, err := w.promoteScheduled(ctx)
	if err != nil {
		return err
	}
	n, err := w.cfg.Queue.PromoteDue(ctx)
	if err != nil {
		return err
	}
	sum.Promoted = promoted + n

	// The completer records the outcomes of this drain's jobs in batches;
	// it ends once every one of them is written. handling counts this
	// drain's jobs in their handlers: the completer waits a moment for them
	// before a write that they could join.
	var handling atomic.Int64
	comp := newCompleter(w.fin, w.log)
	comp.busy = handling.Load
	if w.testCompleter != nil {
		w.testCompleter(comp)
	}
	comp.start(ctx)
	defer comp.stop()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		// inflight counts the slots taken by jobs in their handlers; it
		// is the loop's own. freed counts the slots given back since the
		// loop last looked, unwritten the outcomes the completer has not
		// written yet. Every change of either signals wake.
		inflight  int
		freed     atomic.Int64
		unwritten atomic.Int64
		wake      = make(chan struct{}, 1)
		lastClaim time.Time
	)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	record := func(o outcome) {
		mu.Lock()
		defer mu.Unlock()
		switch o {
		case outcomeCompleted:
			sum.Completed++
		case outcomeRetried:
			sum.Retried++
		case outcomeFailed:
			sum.Failed++
		case outcomeLost:
			sum.Skipped++
		case outcomeReleased:
			sum.Released++
		case outcomeSnoozed:
			sum.Snoozed++
		}
	}
	// submit hands a transition to the completer (the lease still holds
	// the row until the write lands); written, when not nil, runs once it
	// has.
	submit := func(r ran, written func()) {
		unwritten.Add(1)
		comp.submit(completion{item: r.item, until: time.Now().Add(w.cfg.LeaseDuration * 2 / 3), reply: func(a store.Applied, err error) {
			record(w.recorded(r, a, err))
			if written != nil {
				written()
			}
			unwritten.Add(-1)
			wg.Done()
			signal()
		}})
	}
	// waitFor blocks until a slot is freed or an outcome written, or
	// until the timer t (when not nil) fires.
	waitFor := func(t <-chan time.Time) {
		select {
		case <-wake:
		case <-t:
		}
	}
	var loopErr error
	for first := true; ctx.Err() == nil && !w.stopping(); first = false {
		if !first && time.Until(deadline) < reserve {
			break
		}
		inflight -= int(freed.Swap(0))
		free := w.cfg.Concurrency - inflight
		if free == 0 {
			waitFor(nil)
			continue
		}
		// Claim in batches: while other jobs still run, a freed slot waits
		// up to claimCooldown for more to free, so that one claim (one
		// script call, one UPDATE) fills them all.
		if inflight > 0 && !lastClaim.IsZero() {
			if wait := claimCooldown - time.Since(lastClaim); wait > 0 {
				t := time.NewTimer(wait)
				waitFor(t.C)
				t.Stop()
				continue
			}
		}
		// Whether the drain is quiet (nothing runs, nothing waits to be
		// written) is read before the queue is: a write that lands after
		// an empty claim may have queued work (a short retry, a woken
		// parent). A handler counts its outcome as unwritten before it
		// frees its slot, so unwritten is read after the slots.
		inflight -= int(freed.Swap(0))
		quiet := inflight == 0 && unwritten.Load() == 0
		lastClaim = time.Now()
		rows, skipped, err := w.claim(ctx, free)
		if err != nil {
			loopErr = err
			break
		}
		mu.Lock()
		sum.Skipped += skipped
		sum.Claimed += len(rows)
		mu.Unlock()
		if len(rows) == 0 {
			if skipped > 0 {
				continue
			}
			// Jobs that fell due meanwhile (a parent woken by its last
			// child, a short retry) run in this drain too.
			if n, err := w.cfg.Queue.PromoteDue(ctx); err == nil && n > 0 {
				mu.Lock()
				sum.Promoted += n
				mu.Unlock()
				continue
			}
			if quiet {
				// Nothing ran or waited to be written when the queue was
				// found empty: the queue is drained.
				break
			}
			// Wait for a running job or a write: either may leave work
			// behind or free a slot.
			waitFor(nil)
			continue
		}
		for i := range rows {
			if !w.running.add() {
				// Shutdown began after the claim: give the job back
				// unrun, like the jobs it releases.
				wg.Add(1)
				submit(w.release(w.log.With("job_id", rows[i].ID, "type", rows[i].Type), &rows[i], w.cfg.Clock.Now().UTC()), nil)
				continue
			}
			inflight++
			wg.Add(1)
			handling.Add(1)
			go func(job models.Job) {
				r := w.run(ctx, &job)
				handling.Add(-1)
				if r.write {
					// The slot frees once the completer has taken the
					// outcome, so the next job starts while it is
					// written (the completer's queue bounds how many
					// outcomes wait). Shutdown waits for the write.
					submit(r, w.running.done)
				} else {
					record(r.o)
					w.running.done()
					wg.Done()
				}
				freed.Add(1)
				signal()
			}(rows[i])
		}
	}
	wg.Wait()
	if d, err := w.cfg.Queue.Depth(ctx); err == nil {
		sum.Remaining = d.Pending
	}
	if sum.Remaining > 0 && w.cfg.Notify != nil && !w.stopping() && ctx.Err() == nil {
		w.cfg.Notify(ctx)
	}
	return loopErr
}
