package jobs

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
)

// heartbeat renews the leases of every job a Worker is running, across all
// of its drains: one renewal statement and one Redis call per tick for all
// of them, instead of one of each per job. A tick runs every third of the
// lease, only while some job is running: the ticker's goroutine starts
// with the first lease registered and ends when the last one leaves.
//
// A job whose row no longer holds its claim (reaped, cancelled, claimed
// again) is lost: its handler's context is cancelled and its outcome is
// dropped. The context's cause (context.Cause) is ErrCancelled when the
// job was cancelled, ErrLeaseLost otherwise. When renewals fail, a job is
// declared lost once its lease has less than one interval left, so that
// the handler stops before the reaper may give the job to another worker;
// and whatever the ticks do (a tick held up by a loaded machine), a
// watchdog of each lease gives it up a third of an interval before it runs
// out unrenewed. A lease counts from the start of its claim, not from its
// handler's start: a claim that took long leaves less of it.
//
// Every lease registered is renewed at every tick, even one claimed just
// before it: a row more in the statement costs next to nothing, and
// skipping young leases would stretch the gap between two renewals past
// one interval, while the completer counts on a finished job's lease
// having two thirds of its length left.
type heartbeat struct {
	lease time.Duration
	every time.Duration
	clock Clock
	queue *redisQueue
	log   *slog.Logger
	// renew renews the leases of fences in the database and returns the
	// ids still holding their claim (the store's RenewMany); tests wrap
	// it to count statements or inject faults.
	renew func(ctx context.Context, fences []store.Fence, until time.Time) ([]int64, error)
	// cancelled returns the ids, of those given, whose job is cancelled
	// (the store's CancelledAmong), to tell a cancelled job from a lost one.
	cancelled func(ctx context.Context, ids []int64) ([]int64, error)

	mu sync.Mutex
	// leases holds the jobs running, by id.
	leases map[int64]*lease
	// stopTicker ends the ticker's goroutine; nil while none runs.
	stopTicker context.CancelFunc
	// tickers counts the ticker goroutines still running (at most one,
	// and briefly two: one ending while the next starts).
	tickers atomic.Int32
	wg      sync.WaitGroup
}

// lease is one running job's claim, as the heartbeat holds it.
type lease struct {
	fence store.Fence
	// validUntil is when the lease runs out for all this worker knows,
	// on the real clock: one lease after the last renewal was sent.
	validUntil time.Time
	// lost is set, under the heartbeat's lock, when the lease is lost.
	lost bool
	// cancel cancels the handler's context with a cause: ErrCancelled or
	// ErrLeaseLost.
	cancel context.CancelCauseFunc
	// cause is why the lease was lost, set with lost.
	cause error
	// watchdog gives the lease up shortly before validUntil unless a
	// renewal pushes it back first.
	watchdog *time.Timer
}

func newHeartbeat(leaseDuration time.Duration, clock Clock, st *store.Store, queue *redisQueue, log *slog.Logger) *heartbeat {
	h := &heartbeat{lease: leaseDuration, every: max(leaseDuration/3, time.Millisecond), clock: clock, queue: queue, log: log.With("component", "heartbeat"),
		renew: st.RenewMany, leases: map[int64]*lease{}}
	if st != nil {
		h.cancelled = st.CancelledAmong
	}
	return h
}

// add registers a job whose handler is starting: its lease counts as
// taken at from (the start of its claim; now when zero). cancel is called,
// under the heartbeat's lock and so at most once, if the lease is lost; it
// must not block. A job already registered under the same id belongs to
// an older claim (the row was claimed again since): that one is lost at
// once.
func (h *heartbeat) add(f store.Fence, cancel context.CancelCauseFunc, from time.Time) *lease {
	if from.IsZero() {
		from = time.Now()
	}
	l := &lease{fence: f, validUntil: from.Add(h.lease), cancel: cancel}
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.leases[f.ID]; ok {
		old.lost, old.cause = true, ErrLeaseLost
		old.cancel(ErrLeaseLost)
		old.watchdog.Stop()
	}
	h.leases[f.ID] = l
	l.watchdog = time.AfterFunc(h.untilGiveUp(l), func() { h.expire(l) })
	if h.stopTicker == nil {
		ctx, stop := context.WithCancel(context.Background())
		h.stopTicker = stop
		h.wg.Add(1)
		h.tickers.Add(1)
		go h.run(ctx)
	}
	return l
}

// remove deregisters a job whose handler returned and reports whether its
// lease was lost meanwhile. Once remove returned, no tick touches l: the
// answer is final.
func (h *heartbeat) remove(l *lease) (lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l.watchdog.Stop()
	if h.leases[l.fence.ID] == l {
		delete(h.leases, l.fence.ID)
		h.stopIfIdle()
	}
	return l.lost
}

// lose marks l, still registered, lost, cancels its handler with cause
// and stops renewing it; h.mu is held.
func (h *heartbeat) lose(l *lease, cause error) {
	l.lost, l.cause = true, cause
	l.cancel(cause)
	l.watchdog.Stop()
	delete(h.leases, l.fence.ID)
	h.stopIfIdle()
}

// untilGiveUp is how long from now l's watchdog waits: until a third of
// an interval before its lease runs out.
func (h *heartbeat) untilGiveUp(l *lease) time.Duration {
	return time.Until(l.validUntil) - h.every/3
}

// expire is l's watchdog: a lease still registered and not renewed since
// the watchdog was set is given up before it runs out.
func (h *heartbeat) expire(l *lease) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.leases[l.fence.ID] != l {
		return
	}
	if d := h.untilGiveUp(l); d > 0 {
		l.watchdog.Reset(d) // renewed meanwhile
		return
	}
	h.log.Info("lease lost: not renewed before it nearly ran out", "job_id", l.fence.ID, "attempt", l.fence.Attempt)
	h.lose(l, ErrLeaseLost)
}

// stopIfIdle ends the ticker when no lease is left; h.mu is held. A tick
// in flight is cancelled: none of its leases is registered any more.
func (h *heartbeat) stopIfIdle() {
	if len(h.leases) == 0 && h.stopTicker != nil {
		h.stopTicker()
		h.stopTicker = nil
	}
}

// wait returns once every ticker goroutine has ended; call it when no job
// can be registered any more (after Shutdown's handlers returned).
func (h *heartbeat) wait() { h.wg.Wait() }

// run ticks every interval until ctx ends.
func (h *heartbeat) run(ctx context.Context) {
	defer h.wg.Done()
	defer h.tickers.Add(-1)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.tick(ctx)
		}
	}
}

// tick renews every registered lease, then settles each one: renewed, its
// lease runs one more lease from the start of the tick; not renewed, it is
// lost. When the statement fails, the leases with less than one interval
// left are lost and the others wait for the next tick.
func (h *heartbeat) tick(ctx context.Context) {
	start := time.Now()
	h.mu.Lock()
	batch := make([]*lease, 0, len(h.leases))
	fences := make([]store.Fence, 0, len(h.leases))
	for _, l := range h.leases {
		batch = append(batch, l)
		fences = append(fences, l.fence)
	}
	h.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	// The statements and the Redis call get less than an interval
	// (renewTimeout), so a tick ends before the next is due; a renewal
	// that lands late is still valid, and a job whose lease runs out
	// meanwhile is given up by its watchdog.
	tctx, cancel := context.WithTimeout(ctx, renewTimeout(h.every))
	defer cancel()
	until := h.clock.Now().Add(h.lease)
	ids, err := h.renew(tctx, fences, until)
	if err == nil && len(ids) > 0 {
		if qerr := h.queue.RenewMany(tctx, until, ids...); qerr != nil {
			h.log.Debug("leases renewed in the database but not in redis", "count", len(ids), "err", qerr)
		}
	}
	renewed := make(map[int64]bool, len(ids))
	for _, id := range ids {
		renewed[id] = true
	}
	var gone []int64 // no longer holding their claim: cancelled, or lost
	for _, l := range batch {
		if err == nil && !renewed[l.fence.ID] {
			gone = append(gone, l.fence.ID)
		}
	}
	cancelled := h.whichCancelled(tctx, gone)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		h.log.Warn("leases not renewed", "count", len(batch)-len(ids), "err", err)
	}
	for _, l := range batch {
		if h.leases[l.fence.ID] != l {
			continue // its handler returned meanwhile, or it was lost
		}
		switch {
		case renewed[l.fence.ID]:
			l.validUntil = start.Add(h.lease)
		case err == nil && cancelled[l.fence.ID]:
			h.log.Info("job cancelled while running: stopping its handler", "job_id", l.fence.ID, "attempt", l.fence.Attempt)
			h.lose(l, ErrCancelled)
		case err == nil:
			h.log.Info("lease lost: the job moved on while running (reaped or claimed again)", "job_id", l.fence.ID, "attempt", l.fence.Attempt)
			h.lose(l, ErrLeaseLost)
		case time.Until(l.validUntil) < h.every:
			// Stop before the lease runs out, so that two workers never
			// run the job at the same time.
			h.log.Info("lease lost: renewals failed until it nearly ran out", "job_id", l.fence.ID, "attempt", l.fence.Attempt)
			h.lose(l, ErrLeaseLost)
		}
	}
}
