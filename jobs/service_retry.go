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
// in a row), no error and no result. Its history is kept (the attempts of the new run are numbered
// from 1 again). A job in any other status is ErrNotRetryable; another
// user's job is ErrNotFound. If the enqueue fails the job is still
// pending: the reconciler enqueues it.
func (s *Service) Retry(ctx context.Context, userID string, id int64) (*models.Job, error) {
	now := s.cfg.Clock.Now().UTC()
	retried, err := s.store.Retry(ctx, ownerScope(userID), id, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	job, err := s.Get(ctx, userID, id)
	if err != nil {
		return nil, err
	}
	if !retried {
		return job, ErrNotRetryable
	}
	log := s.log.With("job_id", id, "type", job.Type)
	// A failed or cancelled job has left the queue; Remove first keeps an id in at most
	// one of the queue's sets even if that acknowledgement was lost.
	err = s.cfg.Queue.Remove(ctx, id)
	if err == nil {
		err = s.cfg.Queue.Enqueue(ctx, queueItem{ID: id, Priority: job.Priority})
	}
	if err != nil {
		log.Warn("retried job not enqueued; the reconciler will enqueue it", "err", err)
	} else if s.cfg.Notify != nil {
		s.cfg.Notify(ctx)
	}
	log.Info("job re-queued for a fresh run")
	return job, nil
}
