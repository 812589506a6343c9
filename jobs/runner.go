package jobs

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"
)

// runnerLinger is how long an in-process drain that found the queue empty
// waits for a create before it ends.
const runnerLinger = 100 * time.Millisecond

// runner drains the queue inside the serving process: at once when kicked
// (after a create), at each wake-up (a retry or snooze falling due), and
// every interval (for scheduled jobs that fell due, and as the second clock
// of everything else). It is the embedded default's worker; serverless
// deployments let QStash call POST /api/workers instead.
type runner struct {
	worker   *Worker
	budget   time.Duration
	interval time.Duration
	clock    Clock
	log      *slog.Logger
	kick     chan struct{}

	// wakes holds the requested wake-ups, earliest first; rewake tells Run
	// that an earlier one was added.
	mu     sync.Mutex
	wakes  timeHeap
	rewake chan struct{}
}

// newRunner returns a runner; call Run to start it. A nil clock is the
// system clock.
func newRunner(w *Worker, budget, interval time.Duration, clock Clock, logger *slog.Logger) *runner {
	if logger == nil {
		logger = slog.Default()
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &runner{worker: w, budget: budget, interval: interval, clock: clock, log: logger.With("component", "runner"),
		kick: make(chan struct{}, 1), rewake: make(chan struct{}, 1)}
}

// Kick asks for a drain as soon as possible. It never blocks; kicks that
// arrive while a drain is pending are merged into it.
func (r *runner) Kick(context.Context) {
	r.worker.kick()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// WakeAt asks for a drain at each of times. It never blocks.
func (r *runner) WakeAt(times ...time.Time) {
	r.mu.Lock()
	earlier := false
	for _, t := range times {
		if len(r.wakes) == 0 || t.Before(r.wakes[0]) {
			earlier = true
		}
		heap.Push(&r.wakes, t)
	}
	r.mu.Unlock()
	if earlier {
		select {
		case r.rewake <- struct{}{}:
		default:
		}
	}
}

// nextWake returns how long until the earliest wake-up, and false when
// there is none.
func (r *runner) nextWake() (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.wakes) == 0 {
		return 0, false
	}
	return max(r.wakes[0].Sub(r.clock.Now()), 0), true
}

// woke drops the wake-up that fired and every other one that is due.
func (r *runner) woke() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.wakes) > 0 {
		heap.Pop(&r.wakes)
	}
	now := r.clock.Now()
	for len(r.wakes) > 0 && !r.wakes[0].After(now) {
		heap.Pop(&r.wakes)
	}
}

// Run drains until ctx is cancelled, then returns after the drain in
// progress, if any, has ended.
func (r *runner) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	defer wake.Stop()
	for {
		var wakeC <-chan time.Time
		if d, ok := r.nextWake(); ok {
			wake.Reset(d)
			wakeC = wake.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.rewake:
			wake.Stop()
			continue
		case <-r.kick:
		case <-t.C:
		case <-wakeC:
			r.woke()
		}
		wake.Stop()
		sum, err := r.worker.drainLingering(ctx, r.budget, min(runnerLinger, r.interval))
		if err != nil && ctx.Err() == nil {
			r.log.Warn("drain failed", "err", err)
		}
		if sum.Claimed > 0 || sum.Promoted > 0 || sum.Reenqueued > 0 {
			r.log.Info("drain done", "claimed", sum.Claimed, "completed", sum.Completed, "retried", sum.Retried,
				"failed", sum.Failed, "remaining", sum.Remaining, "duration_ms", sum.DurationMs)
		}
	}
}

// timeHeap is a min-heap of times (container/heap).
type timeHeap []time.Time

func (h timeHeap) Len() int           { return len(h) }
func (h timeHeap) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h timeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

// Push adds x, a time.Time.
func (h *timeHeap) Push(x any) { *h = append(*h, x.(time.Time)) }

// Pop removes and returns the last element.
func (h *timeHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}
