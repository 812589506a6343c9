package jobs

// Wake-ups: a drain at the time a job put back with a due time (a retry's
// backoff, a snooze) falls due, instead of at the next scheduled drain.

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	// maxDueWait is the longest a drain that found the queue empty waits
	// for the earliest delayed job to fall due. A wake-up message is
	// published for the second in which its job falls due, so the drain it
	// starts may begin up to a second early.
	maxDueWait = time.Second
	// wakeKeyMargin is how long a wake-up's coalescing key outlives its
	// second.
	wakeKeyMargin = 10 * time.Second
	// wakePublishTimeout bounds one wake-up's Redis call and publish.
	wakePublishTimeout = 10 * time.Second
)

// wakeups arranges a drain at each time a finisher puts jobs back with:
// the in-process runner's timer, and (with a Publisher and triggers on) one
// delayed trigger per second in which jobs fall due, coalesced across every
// server sharing the Redis by a SET NX on a key per second. Publishing runs
// in the background: the finisher's write path waits for none of it, and a
// lost wake-up is logged only (the scheduled drains still run the jobs).
type wakeups struct {
	queue     *redisQueue
	publisher Publisher // nil: no wake-up messages
	runner    *runner   // nil: no in-process runner
	clock     Clock
	log       *slog.Logger

	mu sync.Mutex
	// pending holds the seconds (Unix) still to publish; handled the
	// seconds this process has published or found published, so that
	// later batches for the same second cost no Redis call.
	pending map[int64]struct{}
	handled map[int64]struct{}
	running bool
	wg      sync.WaitGroup
}

// newWakeups returns wakeups publishing through p (nil: none) and setting
// r's timer (nil: none).
func newWakeups(q *redisQueue, p Publisher, r *runner, clock Clock, logger *slog.Logger) *wakeups {
	if clock == nil {
		clock = SystemClock{}
	}
	return &wakeups{queue: q, publisher: p, runner: r, clock: clock, log: logger.With("component", "wakeup"),
		pending: map[int64]struct{}{}, handled: map[int64]struct{}{}}
}

// At arranges a drain at each of times. It never blocks on I/O.
func (w *wakeups) At(ctx context.Context, times ...time.Time) {
	if len(times) == 0 {
		return
	}
	if w.runner != nil {
		w.runner.WakeAt(times...)
	}
	if w.publisher == nil {
		return
	}
	w.mu.Lock()
	for _, t := range times {
		sec := t.Unix()
		if _, ok := w.handled[sec]; !ok {
			w.pending[sec] = struct{}{}
		}
	}
	start := !w.running && len(w.pending) > 0
	if start {
		w.running = true
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if start {
		go w.publishPending(context.WithoutCancel(ctx))
	}
}

// publishPending publishes the pending seconds, earliest first, until none
// is left.
func (w *wakeups) publishPending(ctx context.Context) {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		now := w.clock.Now().Unix()
		for sec := range w.handled {
			if sec < now-1 {
				delete(w.handled, sec)
			}
		}
		secs := make([]int64, 0, len(w.pending))
		for sec := range w.pending {
			secs = append(secs, sec)
			w.handled[sec] = struct{}{}
		}
		clear(w.pending)
		if len(secs) == 0 {
			w.running = false
		}
		w.mu.Unlock()
		if len(secs) == 0 {
			return
		}
		slices.Sort(secs)
		for _, sec := range secs {
			if !w.publish(ctx, sec) {
				// Let a later batch for this second try again.
				w.mu.Lock()
				delete(w.handled, sec)
				w.mu.Unlock()
			}
		}
	}
}

// publish publishes the wake-up for sec unless another server (or an
// earlier call) has, and says whether the second is taken care of.
func (w *wakeups) publish(ctx context.Context, sec int64) bool {
	ctx, cancel := context.WithTimeout(ctx, wakePublishTimeout)
	defer cancel()
	at := time.Unix(sec, 0)
	key := w.queue.Key("wake:" + strconv.FormatInt(sec, 10))
	ttl := max(at.Add(time.Second).Sub(w.clock.Now()), 0) + wakeKeyMargin
	rdb := w.queue.Redis()
	first, err := rdb.SetNX(ctx, key, 1, ttl).Result()
	if err != nil {
		w.log.Warn("wake-up not published; the next scheduled drain will run the jobs", "at", at.UTC(), "err", err)
		return false
	}
	if !first {
		return true
	}
	if err := w.publisher.TriggerAt(ctx, at); err != nil {
		w.log.Warn("wake-up not published; the next scheduled drain will run the jobs", "at", at.UTC(), "err", err)
		if err := rdb.Del(ctx, key).Err(); err != nil {
			w.log.Warn("wake-up key not released", "key", key, "err", err)
		}
		return false
	}
	return true
}

// wait waits until the publishes in flight have ended, or ctx is done.
func (w *wakeups) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// awaitDue is for a drain that found the queue empty: when the earliest
// delayed job falls due within maxDueWait and before limit, it waits for
// that time (or a kick) and says whether the drain should claim again. The
// drain a wake-up started, up to a second before its job is due, thereby
// runs that job.
func (w *Worker) awaitDue(ctx context.Context, limit time.Time) bool {
	at, ok, err := w.cfg.Queue.NextDelayed(ctx)
	if err != nil || !ok {
		return false
	}
	// The scores are in milliseconds: wait a little past the last one.
	d := at.Sub(w.cfg.Clock.Now()) + 2*time.Millisecond
	if d > maxDueWait || time.Now().Add(d).After(limit) {
		return false
	}
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-w.kicked:
			return true
		case <-ctx.Done():
			return false
		case <-w.stop:
			return false
		}
	}
	// A clock that did not move (a test's manual clock) leaves the job
	// not yet due: end the drain rather than wait again.
	return !w.cfg.Clock.Now().Before(at)
}
