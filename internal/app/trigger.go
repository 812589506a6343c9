package app

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// maxTriggersInFlight bounds the trigger publishes running at once; the
// engine debounces them to two a window, so more means QStash is slow,
// and a trigger already on its way starts the drain anyway.
const maxTriggersInFlight = 4

// asyncTrigger is a Publisher whose Trigger returns at once and publishes
// in the background: the engine triggers a drain from inside a create (in
// the group write that every create waiting behind it shares), and a
// publish to QStash is an HTTPS call. Scheduled deliveries (PublishAt,
// Cancel) stay synchronous: the create stores the message id they return.
type asyncTrigger struct {
	jobs.Publisher
	log      *slog.Logger
	inFlight chan struct{}
	wg       sync.WaitGroup
}

var _ jobs.Publisher = (*asyncTrigger)(nil)

func newAsyncTrigger(p jobs.Publisher, log *slog.Logger) *asyncTrigger {
	return &asyncTrigger{Publisher: p, log: log.With("component", "trigger"), inFlight: make(chan struct{}, maxTriggersInFlight)}
}

// Trigger starts publishing a trigger and returns nil; a failure is
// logged, as the engine logs a failed trigger (the per-minute drain runs
// the jobs). When maxTriggersInFlight publishes are running already, the
// trigger is dropped.
func (a *asyncTrigger) Trigger(ctx context.Context, delay time.Duration) error {
	select {
	case a.inFlight <- struct{}{}:
	default:
		a.log.Debug("trigger dropped: publishes still in flight", "in_flight", maxTriggersInFlight)
		return nil
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-a.inFlight }()
		// The create that asked has answered by now; the publisher's own
		// HTTP timeout bounds the call.
		if err := a.Publisher.Trigger(context.WithoutCancel(ctx), delay); err != nil {
			a.log.Warn("trigger not published; the next scheduled drain will run the jobs", "err", err)
		}
	}()
	return nil
}

// wait waits until the publishes in flight have ended, or ctx is done.
func (a *asyncTrigger) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
