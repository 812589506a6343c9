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
// up to Concurrency at a time (reconciling Redis with the database beside
// the claims when a pass is due), until the queue is empty, Shutdown begins,
// or the remaining budget cannot fit another job's timeout (the first batch
// is always claimed). Jobs already running run to their end (each is
// bounded by its timeout), so a drain returns within about its budget. When
// it ends with work left it calls Notify, so a backlog drains continuously.
// Cancelling ctx stops claiming and cancels the running handlers; their
// attempts are recorded as failures to retry.
func (w *Worker) Drain(ctx context.Context, budget time.Duration) (DrainSummary, error) {
	return w.drainLingering(ctx, budget, 0)
}

// drainLingering is Drain that, once the queue is drained, waits up to
// linger for a kick (a create in this process) and goes on claiming if one
// comes: the in-process runner's drains stay open under a steady trickle of
// creates, so a new job waits for one claim instead of a whole new drain
// (its reap, promotions and reconcile turn).
func (w *Worker) drainLingering(ctx context.Context, budget, linger time.Duration) (DrainSummary, error) {
	start := time.Now()
	var sum DrainSummary
	var reconcile func(context.Context) (reconcileResult, error)
	if w.cfg.reconciler != nil {
		reaped, err := w.cfg.reconciler.Reap(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("reap failed", "err", err)
		}
		sum.Reaped = reaped
		reconcile = w.cfg.reconciler.RunIfDue
	}
	err := w.drain(ctx, start.Add(budget), budget, linger, reconcile, &sum)
	sum.DurationMs = time.Since(start).Milliseconds()
	return sum, err
}

// drain is Drain after the reap: it claims and runs jobs until the queue
// is empty, Shutdown begins or deadline leaves too little room, recording
// what it did in sum. reconcile, when not nil, runs beside the claims (a
// pass over every pending job takes a while on a long queue, and the jobs
// already queued need not wait for it); the queue counts as drained only
// once it has ended, since it may have queued jobs.
func (w *Worker) drain(ctx context.Context, deadline time.Time, budget, linger time.Duration, reconcile func(context.Context) (reconcileResult, error), sum *DrainSummary) error {
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
	var reconciling atomic.Bool
	reconciled := make(chan struct{})
	if reconcile == nil {
		close(reconciled)
	} else {
		reconciling.Store(true)
		go func() {
			defer close(reconciled)
			res, err := reconcile(ctx)
			if err != nil && ctx.Err() == nil {
				w.log.Warn("reconcile failed", "err", err)
			}
			mu.Lock()
			sum.Reenqueued = res.Enqueued
			mu.Unlock()
			reconciling.Store(false)
			signal()
		}()
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
	// start runs the rows of a claim, each in its own slot.
	start := func(rows []models.Job) {
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

	// Up to maxClaimsInFlight claims run at once, each for the slots free
	// when it began (reserved until it returns): slots that free while one
	// claim waits for its statement are claimed by the next, so the
	// handlers are not idle for a whole claim's round trip.
	var (
		claims   = make(chan claimResult, maxClaimsInFlight)
		claiming int  // claims in flight
		reserved int  // slots they will fill
		idle     bool // the last claim found nothing: wait for a slot or a write
		drained  bool
		loopErr  error
	)
	// promoteDue queues the delayed jobs that are due and says whether
	// there were any.
	promoteDue := func() bool {
		n, err := w.cfg.Queue.PromoteDue(ctx)
		if err != nil || n == 0 {
			return false
		}
		mu.Lock()
		sum.Promoted += n
		mu.Unlock()
		return true
	}
	// took accounts for a claim that returned and starts its jobs.
	took := func(res claimResult) {
		claiming--
		reserved -= res.n
		if res.err != nil {
			if loopErr == nil {
				loopErr = res.err
			}
			return
		}
		mu.Lock()
		sum.Skipped += res.skipped
		sum.Claimed += len(res.rows)
		mu.Unlock()
		if len(res.rows) > 0 {
			start(res.rows)
			return
		}
		if res.skipped > 0 {
			return
		}
		// Jobs that fell due meanwhile (a parent woken by its last child,
		// a short retry) run in this drain too.
		if promoteDue() {
			return
		}
		if res.quiet {
			// Nothing ran, waited to be written or was being claimed when
			// the queue was found empty: the queue is drained.
			drained = true
			return
		}
		// Wait for a running job, a write or another claim: each may leave
		// work behind or free a slot, and each signals when it ends. With
		// none of them left (they ended while this claim ran, and their
		// signals may have been taken), claim again at once: that claim is
		// quiet.
		idle = inflight > 0 || claiming > 0 || unwritten.Load() > 0 || reconciling.Load()
	}
	// wait blocks until a slot is freed, an outcome written or a claim
	// returned, or until the timer t (when not nil) fires.
	wait := func(t <-chan time.Time) {
		select {
		case <-wake:
			idle = false
		case <-w.kicked:
			// New work in this process.
			idle = false
		case res := <-claims:
			took(res)
		case <-t:
		}
	}
	for began := false; loopErr == nil && ctx.Err() == nil && !w.stopping(); {
		if began && time.Until(deadline) < reserve {
			break
		}
		if drained {
			// A delayed job due in a moment (a wake-up's retry) runs here.
			if !w.awaitDue(ctx, deadline.Add(-reserve)) && !w.awaitKick(ctx, min(linger, time.Until(deadline)-reserve)) {
				break
			}
			drained = false
			// Jobs may have fallen due while the drain waited.
			promoteDue()
		}
		inflight -= int(freed.Swap(0))
		free := w.cfg.Concurrency - inflight - reserved
		if free <= 0 || claiming == maxClaimsInFlight || idle {
			wait(nil)
			continue
		}
		// Claim in batches: while other jobs still run or are claimed, a
		// freed slot waits up to claimCooldown for more to free, so that
		// one claim (one script call, one UPDATE) fills them all.
		if inflight+reserved > 0 && began {
			if d := claimCooldown - time.Since(lastClaim); d > 0 {
				t := time.NewTimer(d)
				wait(t.C)
				t.Stop()
				continue
			}
		}
		// Whether the drain is quiet (nothing runs, waits to be written or
		// is being claimed) is read before the queue is: a write that lands
		// after an empty claim may have queued work (a short retry, a woken
		// parent). A handler counts its outcome as unwritten before it
		// frees its slot, so unwritten is read after the slots.
		inflight -= int(freed.Swap(0))
		free = w.cfg.Concurrency - inflight - reserved
		quiet := inflight == 0 && claiming == 0 && unwritten.Load() == 0 && !reconciling.Load()
		began, lastClaim = true, time.Now()
		claiming++
		reserved += free
		go func(n int) {
			rows, skipped, err := w.claim(ctx, n)
			claims <- claimResult{n: n, rows: rows, skipped: skipped, err: err, quiet: quiet}
		}(free)
	}
	// Claims still in flight were made within the budget: their jobs run
	// (or, during Shutdown, go back to the queue).
	for claiming > 0 {
		took(<-claims)
	}
	wg.Wait()
	<-reconciled
	if d, err := w.cfg.Queue.Depth(ctx); err == nil {
		sum.Remaining = d.Pending
	}
	if sum.Remaining > 0 && w.cfg.Notify != nil && !w.stopping() && ctx.Err() == nil {
		w.cfg.Notify(ctx)
	}
	return loopErr
}

// kick tells a drain of this Worker that new work was queued here: an idle
// or lingering drain claims again at once. It never blocks.
func (w *Worker) kick() {
	select {
	case w.kicked <- struct{}{}:
	default:
	}
}

// awaitKick waits up to d for a kick and says whether one came.
func (w *Worker) awaitKick(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.kicked:
		return true
	case <-t.C:
	case <-ctx.Done():
	case <-w.stop:
	}
	return false
}
