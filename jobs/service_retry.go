package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobhook/jobhook/models"
)

// ErrNotRetryable is returned when retrying a job that is neither failed
// nor cancelled.
var ErrNotRetryable = errors.New("job cannot be retried in its current status")

// Retry re-queues a user's failed or cancelled job with a fresh attempt
// budget: it becomes pending, due now, with no attempts counted (nor lost
// in a row), no error and no result, and every failed or cancelled job
// below it (a carousel's children) starts again with it; a job whose
// expiry passed gets a new one (see store.RetryTree). Its history is kept
// (the attempts of the new run are numbered from 1 again). A job in any
// other status is ErrNotRetryable; another user's job is ErrNotFound. If
// the enqueue fails the jobs are still pending: the reconciler enqueues
// them.
func (s *Service) Retry(ctx context.Context, userID string, id int64) (*models.Job, error) {
	now := s.cfg.Clock.Now().UTC()
	retried, err := s.store.RetryTree(ctx, ownerScope(userID), id, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	job, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if len(retried) == 0 {
		return job, ErrNotRetryable
	}
	log := s.log.With("job_id", id, "type", job.Type)
	// A failed or cancelled job has left the queue; Remove first keeps an
	// id in at most one of the queue's sets even if that acknowledgement
	// was lost.
	items := make([]queueItem, len(retried))
	for i, r := range retried {
		items[i] = queueItem{ID: r.ID, Priority: r.Priority, Meta: encodeMeta(r.UserID, r.Type, r.FlowKeys)}
		if err == nil {
			err = s.cfg.Queue.Remove(ctx, r.ID)
		}
	}
	if err == nil {
		err = s.cfg.Queue.Enqueue(ctx, items...)
	}
	if err != nil {
		log.Warn("retried jobs not enqueued; the reconciler will enqueue them", "count", len(items), "err", err)
	} else if s.cfg.Notify != nil {
		s.cfg.Notify(ctx)
	}
	log.Info("job re-queued for a fresh run", "with_descendants", len(retried)-1)
	return job, nil
}
