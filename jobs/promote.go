package jobs

// The promoter: scheduled jobs whose time has come become pending.

import (
	"context"
	"fmt"
)

// promoteScheduled moves scheduled jobs whose time has come to pending and
// enqueues them; ctx bounds it (promoteTimeout in a drain). A page promoted
// but not enqueued is queued by the reconciler.
func (w *Worker) promoteScheduled(ctx context.Context) (int, error) {
	now := w.cfg.Clock.Now().UTC()
	total := 0
	for {
		rows, err := w.store.PromoteScheduled(ctx, now, 500)
		if err != nil {
			return total, fmt.Errorf("drain: %w: %w", ErrUnavailable, err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		items := make([]queueItem, len(rows))
		for i, r := range rows {
			items[i] = itemOf(&r)
		}
		if err := w.cfg.Queue.Enqueue(ctx, items...); err != nil {
			return total, fmt.Errorf("drain: enqueue promoted jobs: %w: %w", ErrUnavailable, err)
		}
		total += len(rows)
		w.log.Info("scheduled jobs are due", "count", len(rows))
	}
}
