package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Publisher sends the messages that call the worker endpoint: QStash in
// production, the in-process QStash in the embedded default. It is an
// accelerator, never the only way a job runs: when a publish fails, the
// per-minute drain still promotes due scheduled jobs and drains the queue.
type Publisher interface {
	// PublishAt asks for one call of the worker endpoint at t carrying the
	// job's id, and returns the message's id.
	PublishAt(ctx context.Context, jobID int64, at time.Time) (messageID string, err error)
	// Cancel withdraws a message from PublishAt. A message that is unknown
	// or already delivered is not an error.
	Cancel(ctx context.Context, messageID string) error
	// Trigger asks for one call of the worker endpoint after delay (zero:
	// now).
	Trigger(ctx context.Context, delay time.Duration) error
	// TriggerAt asks for one call of the worker endpoint not before at,
	// truncated to its second (QStash's Upstash-Not-Before is in whole
	// seconds): the call may come up to a second before at, and the drain
	// it starts waits for a delayed job that falls due within a second
	// (see wakeups). An at in the past asks for a call now.
	TriggerAt(ctx context.Context, at time.Time) error
}

// DefaultTriggerWindow is the debounce window of a triggerer.
const DefaultTriggerWindow = time.Second

// triggerer debounces trigger messages across every server sharing a
// Redis: in each window at most one leading trigger (published at once)
// and one trailing trigger (published to arrive one window later, for the
// jobs created after the leading one's drain may have ended). A burst of
// creates lasting D therefore publishes at most 2·⌈D/window⌉+2 messages.
type triggerer struct {
	queue     *redisQueue
	publisher Publisher
	window    time.Duration
	log       *slog.Logger
}

// newTriggerer returns a triggerer; window defaults to DefaultTriggerWindow
// and is rounded up to whole seconds (QStash delays are in seconds).
func newTriggerer(q *redisQueue, p Publisher, window time.Duration, logger *slog.Logger) *triggerer {
	if window <= 0 {
		window = DefaultTriggerWindow
	}
	window = window.Round(time.Second)
	if window < time.Second {
		window = time.Second
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &triggerer{queue: q, publisher: p, window: window, log: logger.With("component", "trigger")}
}

// Notify publishes a trigger unless this window already has its two. It
// never fails the caller: a lost trigger only delays the job to the next
// scheduled drain.
func (t *triggerer) Notify(ctx context.Context) {
	if err := t.notify(ctx); err != nil {
		t.log.Warn("trigger not published; the next scheduled drain will run the job", "err", err)
	}
}

func (t *triggerer) notify(ctx context.Context) error {
	rdb := t.queue.Redis()
	lead, err := rdb.SetNX(ctx, t.queue.Key("trigger:lead"), 1, t.window).Result()
	if err != nil {
		return fmt.Errorf("debounce: %w", err)
	}
	if lead {
		return t.publisher.Trigger(ctx, 0)
	}
	trail, err := rdb.SetNX(ctx, t.queue.Key("trigger:trail"), 1, t.window).Result()
	if err != nil {
		return fmt.Errorf("debounce: %w", err)
	}
	if trail {
		return t.publisher.Trigger(ctx, t.window)
	}
	return nil
}
