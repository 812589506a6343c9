package jobs

import (
	"context"
	"log/slog"
	"time"
)

// runnerLinger is how long an in-process drain that found the queue empty
// waits for a create before it ends.
const runnerLinger = 100 * time.Millisecond

// runner drains the queue inside the serving process: at once when kicked
// (after a create), and every interval (for retries and scheduled jobs
// that fell due). It is the embedded default's worker; serverless
// deployments let QStash call POST /api/workers instead.
type runner struct {
	worker   *Worker
	budget   time.Duration
	interval time.Duration
	log      *slog.Logger
	kick     chan struct{}
}

// newRunner returns a runner; call Run to start it.
func newRunner(w *Worker, budget, interval time.Duration, logger *slog.Logger) *runner {
	if logger == nil {
		logger = slog.Default()
	}
	return &runner{worker: w, budget: budget, interval: interval, log: logger.With("component", "runner"), kick: make(chan struct{}, 1)}
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

// Run drains until ctx is cancelled, then returns after the drain in
// progress, if any, has ended.
func (r *runner) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
		}
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
