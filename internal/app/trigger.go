package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

const (
	// maxTriggersInFlight bounds the trigger publishes running at once; the
	// engine debounces them to two a window, so more means QStash is slow,
	// and a trigger already on its way starts the drain anyway.
	maxTriggersInFlight = 4
	// maxWakeupsInFlight bounds the wake-up publishes (TriggerAt) running
	// at once. The engine publishes one per second in which retries fall
	// due; a wake-up is for a later time, so one on its way does not stand
	// for another, and one over the bound is refused rather than dropped.
	maxWakeupsInFlight = 16
)

// errWakeupsInFlight refuses a wake-up while maxWakeupsInFlight publishes
// are still running.
var errWakeupsInFlight = errors.New("wake-up not published: publishes still in flight (QStash slow)")

// asyncTrigger is a Publisher whose Trigger and TriggerAt return at once
// and publish in the background: the engine triggers a drain from inside a
// create (in the group write that every create waiting behind it shares),
// and a publish to QStash is an HTTPS call. Scheduled deliveries
// (PublishAt, Cancel) stay synchronous: the create stores the message id
// they return.
type asyncTrigger struct {
	jobs.Publisher
	log      *slog.Logger
	inFlight chan struct{}
	wakes    chan struct{}
	wg       sync.WaitGroup
}

var _ jobs.Publisher = (*asyncTrigger)(nil)

func newAsyncTrigger(p jobs.Publisher, log *slog.Logger) *asyncTrigger {
	return &asyncTrigger{Publisher: p, log: log.With("component", "trigger"),
		inFlight: make(chan struct{}, maxTriggersInFlight), wakes: make(chan struct{}, maxWakeupsInFlight)}
}

// Trigger starts publishing a trigger and returns nil; a failure is
// logged, as the engine logs a failed trigger (the per-minute drain runs
// the jobs). When maxTriggersInFlight publishes are running already, the
// trigger is dropped.
func (a *asyncTrigger) Trigger(ctx context.Context, delay time.Duration) error {
	if !a.goPublish(ctx, a.inFlight, func(ctx context.Context) error { return a.Publisher.Trigger(ctx, delay) }) {
		a.log.Debug("trigger dropped: publishes still in flight", "in_flight", maxTriggersInFlight)
	}
	return nil
}

// TriggerAt starts publishing a wake-up at at and returns nil; a failure is
// logged (the per-minute drain runs the jobs). When maxWakeupsInFlight
// publishes are running already, it returns errWakeupsInFlight.
func (a *asyncTrigger) TriggerAt(ctx context.Context, at time.Time) error {
	if !a.goPublish(ctx, a.wakes, func(ctx context.Context) error { return a.Publisher.TriggerAt(ctx, at) }) {
		return errWakeupsInFlight
	}
	return nil
}

// goPublish runs publish in the background, holding a place in slots, and
// says whether it had a place.
func (a *asyncTrigger) goPublish(ctx context.Context, slots chan struct{}, publish func(context.Context) error) bool {
	select {
	case slots <- struct{}{}:
	default:
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-slots }()
		// The caller has answered by now; the publisher's own HTTP timeout
		// bounds the call.
		if err := publish(context.WithoutCancel(ctx)); err != nil {
			a.log.Warn("trigger not published; the next scheduled drain will run the jobs", "err", err)
		}
	}()
	return true
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
