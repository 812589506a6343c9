package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

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

// MaxBulkRetry caps the jobs one RetryMatching call retries.
const MaxBulkRetry = 1000

// RetryFailure is a job RetryMatching could not retry, with the stable
// code of the reason and its message.
type RetryFailure struct {
	ID      int64  `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BulkRetry is what RetryMatching did.
type BulkRetry struct {
	// Retried are the jobs retried, oldest first, a child retried with its
	// parent included.
	Retried []int64 `json:"retried"`
	// Failed are the jobs that matched and could not be retried.
	Failed []RetryFailure `json:"failed"`
	// More says that more than MaxBulkRetry jobs matched: the newest
	// MaxBulkRetry were handled, and another call handles the next ones.
	More bool `json:"more"`
}

// RetryMatching retries the failed jobs req matches (its cancelled ones
// when req.Status is StatusCancelled), as Retry does each: the newest
// MaxBulkRetry of them, oldest first. A child whose parent it retried was
// retried with it and is counted as retried. req's Cursor and Limit are
// ignored. A job that could not be retried is in Failed with its code;
// the others are still retried.
func (s *Service) RetryMatching(ctx context.Context, userID string, req ListRequest) (BulkRetry, error) {
	out := BulkRetry{Retried: []int64{}, Failed: []RetryFailure{}}
	switch req.Status {
	case "":
		req.Status = models.StatusFailed
	case models.StatusFailed, models.StatusCancelled:
	default:
		return out, invalid("invalid_status", "status", "only failed or cancelled jobs can be retried, not %s ones", req.Status)
	}
	req.UserID = userID
	req.Limit = MaxBulkRetry
	f, err := listFilter(req)
	if err != nil {
		return out, err
	}
	found, err := s.store.List(ctx, f)
	if err != nil {
		return out, fmt.Errorf("bulk retry: list jobs: %w: %w", ErrUnavailable, err)
	}
	if len(found) > MaxBulkRetry {
		found, out.More = found[:MaxBulkRetry], true
	}
	slices.Reverse(found) // oldest first: a parent before its children
	retried := make(map[int64]bool, len(found))
	for _, j := range found {
		if j.ParentID != nil && retried[*j.ParentID] {
			retried[j.ID] = true
			out.Retried = append(out.Retried, j.ID)
			continue
		}
		if _, err := s.Retry(ctx, userID, j.ID); err != nil {
			if errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
				return out, fmt.Errorf("bulk retry: job %d: %w", j.ID, err)
			}
			code, msg := retryRefusal(err)
			out.Failed = append(out.Failed, RetryFailure{ID: j.ID, Code: code, Message: msg})
			continue
		}
		retried[j.ID] = true
		out.Retried = append(out.Retried, j.ID)
	}
	return out, nil
}

// retryRefusal is the stable code and message of a job Retry refused.
func retryRefusal(err error) (code, message string) {
	switch {
	case errors.Is(err, ErrNotRetryable):
		return "job_not_retryable", "the job is no longer failed or cancelled"
	case errors.Is(err, ErrNotFound):
		return "job_not_found", "the job no longer exists"
	default:
		return "retry_refused", err.Error()
	}
}
