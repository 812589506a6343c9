package jobs

// The drain: the claim loop, its budget and slots, and its completer.

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// Drain reaps expired leases, promotes due jobs, then claims and runs jobs,
// up to Concurrency at a time (reconciling Redis with the database beside
// the claims when a pass is due), until the queue is empty, Shutdown
// begins, or the budget is spent. A claimed job starts only if its own
// timeout fits in the rest of the budget; one that does not is given back
// unrun at its place in the queue (its attempt not counted, counted in
// LeftForTime) and the drain stops claiming, so every job it starts ends
// within the budget. When it ends with work left it calls Notify, so a
// backlog drains continuously. Cancelling ctx stops claiming and cancels
// the running handlers; their attempts are recorded as failures to retry.
//
// Every backend call of a drain has a deadline, and a drain returns within
// its budget plus drainAnswerMargin whatever the backends do: outcomes not
// written by then are logged by job id and counted in Unrecorded (the jobs
// stay processing and the reaper recovers them), and the error then wraps
// ErrUnavailable. The summary is returned with every error.
//
// With tracing on, the drain is a span (the child of ctx's: a worker
// call's request span), and each attempt is linked to it.
func (w *Worker) Drain(ctx context.Context, budget time.Duration) (DrainSummary, error) {
	ctx, span := w.tracer.start(ctx, "jobs.drain")
	sum, err := w.drainLingering(ctx, budget, 0)
	endDrain(span, sum, err)
	return sum, err
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
		rctx, cancel := boundedCtx(ctx, reapTimeout, workBy(start, budget))
		reaped, err := w.cfg.reconciler.Reap(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "reap failed", "err", err)
		}
		sum.Reaped = reaped
		reconcile = w.cfg.reconciler.RunIfDue
	}
	err := w.drain(ctx, start, budget, linger, reconcile, &sum)
	took := time.Since(start)
	sum.DurationMs = took.Milliseconds()
	w.fin.metrics.DrainDone(took)
	return sum, err
}

// workBy is when the backend calls a drain makes before its claims (the
// reap, the promotions) must have ended: with its budget, and at least
// queueCallTimeout after its start however short the budget.
func workBy(start time.Time, budget time.Duration) time.Time {
	return start.Add(max(budget, queueCallTimeout))
}

// drain is Drain after the reap: it claims and runs jobs until the queue
// is empty, Shutdown begins or the rest of the budget fits no job,
// recording what it did in out. reconcile, when not nil, runs beside the
// claims (a pass over every pending job takes a while on a long queue,
// and the jobs already queued need not wait for it); the queue counts as
// drained only once it has ended, since it may have queued jobs.
func (w *Worker) drain(ctx context.Context, begun time.Time, budget, linger time.Duration, reconcile func(context.Context) (reconcileResult, error), out *DrainSummary) error {
	deadline := begun.Add(budget)
	answerBy := deadline.Add(drainAnswerMargin)
	// No job shorter than this can be claimed: once less of the budget is
	// left, the drain stops claiming.
	shortest, _ := w.timeouts()
	// sum is this drain's own, written under mu; it is copied to out when
	// the drain returns (outcomes that come later, once it answered, do
	// not change what it said).
	sum := *out
	var mu sync.Mutex
	defer func() {
		mu.Lock()
		*out = sum
		mu.Unlock()
	}()
	pctx, cancel := boundedCtx(ctx, promoteTimeout, workBy(begun, budget))
	promoted, err := w.promoteScheduled(pctx)
	cancel()
	if err != nil {
		return err
	}
	qctx, cancel := boundedCtx(ctx, queueCallTimeout, answerBy)
	n, err := w.cfg.Queue.PromoteDue(qctx)
	cancel()
	if err != nil {
		return fmt.Errorf("drain: promote due jobs: %w: %w", ErrUnavailable, err)
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
	var (
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
		// lastPromote is when the loop last promoted due delayed jobs.
		lastPromote = time.Now()
		// open holds the jobs of this drain in their handlers or whose
		// outcome is not written yet, by id (under mu): the ones named
		// when the drain answers without them.
		open = map[int64]bool{}
		// outOfTime is set when a claimed job's timeout did not fit in
		// the rest of the budget: the drain claims no more. neverFits
		// names a type whose timeout exceeds the whole budget.
		outOfTime bool
		neverFits string
	)
	opened := func(id int64) {
		mu.Lock()
		open[id] = true
		mu.Unlock()
	}
	closed := func(id int64) {
		mu.Lock()
		delete(open, id)
		mu.Unlock()
	}
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
			rctx, cancel := context.WithDeadline(ctx, deadline)
			defer cancel()
			res, err := reconcile(rctx)
			if err != nil && ctx.Err() == nil {
				w.log.WarnContext(ctx, "reconcile failed", "err", err)
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
		id := r.item.update.Fence.ID
		comp.submit(completion{item: r.item, until: time.Now().Add(w.cfg.LeaseDuration * 2 / 3), reply: func(a store.Applied, err error) {
			switch {
			case r.item.update.Transition.Kind() != store.KindUnstarted:
				o := w.recorded(r, a, err)
				if err != nil {
					mu.Lock()
					sum.Unrecorded++
					mu.Unlock()
				} else {
					record(o)
				}
			case err != nil:
				r.log.Error("could not give back a job left for lack of time; the reaper recovers it when its lease ends", "err", err)
				mu.Lock()
				sum.Unrecorded++
				mu.Unlock()
			case a.Applied:
				mu.Lock()
				sum.LeftForTime++
				mu.Unlock()
			default:
				record(outcomeLost)
			}
			if written != nil {
				written()
			}
			closed(id)
			unwritten.Add(-1)
			wg.Done()
			signal()
		}})
	}
	// start runs the rows of a claim, each in its own slot, if its
	// timeout fits in the rest of the budget; leased is when the claim
	// began.
	start := func(rows []models.Job, leased time.Time) {
		for i := range rows {
			job := &rows[i]
			// The job's logger is built only on the rare paths below:
			// this loop is the drain's one claiming goroutine.
			jobLog := func() *slog.Logger { return w.log.With("job_id", job.ID, "type", job.Type) }
			opened(job.ID)
			if !w.running.add(job.ID) {
				// Shutdown began after the claim: give the job back
				// unrun, like the jobs it releases.
				wg.Add(1)
				submit(w.release(jobLog(), job, w.cfg.Clock.Now().UTC()), nil)
				continue
			}
			if timeout := w.timeoutOfType(job.Type); time.Until(deadline) < timeout {
				// Its timeout does not fit in what is left of the
				// budget: back at its place, unrun, and no more claims
				// (the jobs of this claim that fit still run).
				log := jobLog()
				log.Info("job left for a drain with more time: its timeout does not fit in the rest of the budget",
					"timeout", timeout, "left", time.Until(deadline).Round(time.Millisecond))
				outOfTime = true
				mu.Lock()
				sum.Claimed-- // counted by the claim; it does not run
				mu.Unlock()
				if timeout > budget && neverFits == "" {
					neverFits = job.Type
				}
				wg.Add(1)
				id := job.ID
				submit(w.transition(log, job, w.cfg.Clock.Now().UTC(), store.Unstarted(), false), func() { w.running.done(id) })
				continue
			}
			w.fin.metrics.JobClaimed(job.Type, queueWait(job, leased))
			inflight++
			wg.Add(1)
			handling.Add(1)
			go func(job models.Job) {
				r := w.run(ctx, &job, leased)
				handling.Add(-1)
				if r.write {
					// The slot frees once the completer has taken the
					// outcome, so the next job starts while it is
					// written (the completer's queue bounds how many
					// outcomes wait). Shutdown waits for the write.
					submit(r, func() { w.running.done(job.ID) })
				} else {
					record(r.o)
					w.running.done(job.ID)
					closed(job.ID)
					wg.Done()
				}
				freed.Add(1)
				signal()
			}(*job)
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
		qctx, cancel := boundedCtx(ctx, queueCallTimeout, answerBy)
		defer cancel()
		n, err := w.cfg.Queue.PromoteDue(qctx)
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
			start(res.rows, res.leased)
			return
		}
		if res.skipped > 0 || res.more {
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
	// returned, until the timer t (when not nil) fires, or until the loop
	// must end: the budget fits no more job (stopAt), ctx ends or Shutdown
	// begins. An outcome write held up by a hung backend never holds the
	// loop past its budget.
	stopAt := time.NewTimer(time.Until(deadline) - shortest)
	defer stopAt.Stop()
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
		case <-stopAt.C:
		case <-ctx.Done():
		case <-w.stop:
		}
	}
	for began := false; loopErr == nil && ctx.Err() == nil && !w.stopping() && !outOfTime; {
		if time.Until(deadline) < shortest {
			break
		}
		if drained {
			// A delayed job due in a moment (a wake-up's retry) runs here.
			dctx, cancel := boundedCtx(ctx, maxDueWait+queueCallTimeout, answerBy)
			due := w.awaitDue(dctx, deadline.Add(-shortest))
			cancel()
			if !due && !w.awaitKick(ctx, min(linger, time.Until(deadline)-shortest)) {
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
		// Delayed jobs that fell due during a long drain (a retry, a
		// deferral, a snooze) take their turn by priority now, instead of
		// waiting for the backlog before them to drain.
		if time.Since(lastPromote) >= promoteEvery {
			promoteDue()
			lastPromote = time.Now()
		}
		inflight -= int(freed.Swap(0))
		free = w.cfg.Concurrency - inflight - reserved
		quiet := inflight == 0 && claiming == 0 && unwritten.Load() == 0 && !reconciling.Load()
		began, lastClaim = true, time.Now()
		claiming++
		reserved += free
		go func(n int) {
			leased := time.Now()
			rows, skipped, more, err := w.claim(ctx, n, answerBy)
			claims <- claimResult{n: n, rows: rows, skipped: skipped, more: more, err: err, quiet: quiet, leased: leased}
		}(free)
	}
	// Claims still in flight were made within the budget: their jobs run
	// (or, during Shutdown, go back to the queue, or, out of time, stay
	// unrun). Each claim is bounded by its deadline; the timer is there in
	// case a driver overruns one.
	answer := time.NewTimer(time.Until(answerBy))
	defer answer.Stop()
	late := false
	for claiming > 0 && !late {
		select {
		case res := <-claims:
			took(res)
		case <-answer.C:
			late = true
		}
	}
	// The rest is bounded by answerBy: the handlers end within the budget
	// (their timeouts fit), and the completer's retries wait for a backend
	// that failed or hung. Once Shutdown has given up, so does the drain.
	tail := make(chan struct{})
	if !late {
		go func() {
			wg.Wait()
			<-reconciled
			comp.stop()
			close(tail)
		}()
	}
	gone := w.gaveUp
	for waiting := !late; waiting; {
		select {
		case <-tail:
			waiting = false
		case <-answer.C:
			late, waiting = true, false
		case <-gone:
			// Shutdown gave up on the jobs it could not give back: so
			// does the drain, at once.
			gone = nil
			answer.Reset(min(100*time.Millisecond, time.Until(answerBy)))
		}
	}
	if late {
		mu.Lock()
		ids := make([]int64, 0, len(open))
		for id := range open {
			ids = append(ids, id)
		}
		mu.Unlock()
		slices.Sort(ids)
		w.log.ErrorContext(ctx, "drain answers without the outcomes of some jobs (a backend failed or hung); they stay processing and the reaper recovers them when their lease ends",
			"count", len(ids), "job_ids", ids, "claims_in_flight", claiming)
		if loopErr == nil {
			loopErr = fmt.Errorf("drain: %w: %d outcomes not written %s after the budget", ErrUnavailable, len(ids), drainAnswerMargin)
		}
		mu.Lock()
		sum.Unrecorded += len(ids)
		mu.Unlock()
		if claiming > 0 {
			// Claims still out: their rows, if any, stay processing under
			// their lease, for the reaper.
			go func(n int) {
				for ; n > 0; n-- {
					if res := <-claims; len(res.rows) > 0 {
						w.log.Error("jobs claimed after the drain answered; the reaper recovers them when their lease ends", "count", len(res.rows))
					}
				}
				wg.Wait()
				<-reconciled
				comp.stop()
			}(claiming)
		}
		return loopErr
	}
	qctx, cancel = boundedCtx(ctx, queueCallTimeout, answerBy)
	defer cancel()
	if d, err := w.cfg.Queue.Depth(qctx); err == nil {
		sum.Remaining = d.Pending
	}
	if neverFits != "" {
		w.log.WarnContext(ctx, "a job's timeout exceeds the whole drain budget: drains of this budget never start it; raise DRAIN_BUDGET (or ?budget=)",
			"type", neverFits, "timeout", w.timeoutOfType(neverFits), "budget", budget)
	}
	if sum.Remaining > 0 && w.cfg.Notify != nil && !w.stopping() && ctx.Err() == nil && neverFits == "" {
		w.cfg.Notify(qctx)
	}
	if loopErr == nil && sum.Unrecorded > 0 {
		loopErr = fmt.Errorf("drain: %w: %d outcomes not written", ErrUnavailable, sum.Unrecorded)
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
