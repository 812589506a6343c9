package jobs

// The deadlines of the engine's own database and Redis calls. Every wait of
// a drain, the heartbeat, the reaper and Shutdown is bounded by one of
// these, so a backend that accepts connections and never answers delays an
// answer by a known amount instead of forever.

import (
	"context"
	"time"
)

const (
	// queueCallTimeout bounds one Redis call of a drain (PromoteDue,
	// Depth, a claim's script, a release): each is one round trip of a
	// few keys, so a healthy Redis answers in milliseconds and a longer
	// wait is an outage.
	queueCallTimeout = 2 * time.Second
	// promoteTimeout bounds the promotion of the scheduled jobs that fell
	// due, at the start of a drain (one page of rows per statement, and
	// one enqueue per page).
	promoteTimeout = 5 * time.Second
	// reapTimeout bounds one reap pass: one read of the expired leases
	// and one batched write of their transitions. A pass cut short leaves
	// the rest to the next one.
	reapTimeout = 5 * time.Second
	// drainAnswerMargin is how long after its budget a drain waits for
	// the outcomes of its jobs to be written before it answers anyway:
	// every job it started fits its timeout in the budget, so by then a
	// write still waiting is held up by a failed or hung backend. Those
	// jobs stay processing and the reaper recovers them once their lease
	// ends. Together with the time to send the answer it keeps a drain's
	// answer within its budget plus 5 s.
	drainAnswerMargin = 4 * time.Second
	// releaseTimeout bounds Shutdown's wait, once the grace period is
	// over, for the jobs it cancelled to be given back. Jobs not given
	// back by then (a hung database) stay processing, and the reaper of
	// another process, or of this one after a restart, recovers them when
	// their lease ends.
	releaseTimeout = 2 * time.Second
)

// claimTimeout bounds one claim of a drain, retries of transient errors
// included: at most claimRetryFor, and at most a third of the lease, so
// that a claimed job reaches its handler with two thirds of its lease
// left, before the heartbeat's first renewal is due.
func claimTimeout(lease time.Duration) time.Duration {
	return min(claimRetryFor, lease/3)
}

// renewTimeout bounds one renewal tick of the heartbeat: three quarters
// of its interval, so that a tick ends before the next one is due, while a
// renewal slowed down by a loaded database still has most of an interval
// to land (one that fails twice in a row gives its leases up: see
// heartbeat.tick and the leases' watchdogs).
func renewTimeout(every time.Duration) time.Duration {
	return every * 3 / 4
}

// boundedCtx is ctx with a deadline of at most d from now, and no later
// than by (when by is not zero).
func boundedCtx(ctx context.Context, d time.Duration, by time.Time) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(d)
	if !by.IsZero() && by.Before(deadline) {
		deadline = by
	}
	return context.WithDeadline(ctx, deadline)
}
