package jobs

import "context"

// Test-only names for the engine's plumbing, for the black-box tests of
// package jobs_test: outside the tests only the Engine builds these.

type (
	Reconciler      = reconciler
	ReconcileResult = reconcileResult
)

// QueueOf returns the engine's queue.
func QueueOf(e *Engine) *redisQueue { return e.queue }

// ReconcilerOf returns the engine's reconciler: the one its drains reap
// and reconcile with.
func ReconcilerOf(e *Engine) *Reconciler { return e.reconciler }

// SetNotify sends the engine's requests for a drain (after a create, or a
// reaped or cancelled child waking its parent) to f instead of the
// in-process runner and the trigger. Call it before the engine is used.
func SetNotify(e *Engine, f func(ctx context.Context)) { e.notify = f }

// Test-only names for the queue, for the black-box tests that set up
// queue states by hand.
type (
	Queue = redisQueue
	Item  = queueItem
)
