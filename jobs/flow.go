package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobhook/jobhook/models"
)

// Parent and child jobs (flows). A handler creates its children with
// SpawnChildren, then waits for them with AwaitChildren, which ends the
// attempt without counting it (a snooze) until every child has finished;
// the last child's end wakes its parent at once. Spawning is idempotent: a retry
// of the parent gets the same children back, never a second set.
//
//	children, err := jobs.SpawnChildren(ctx, specs)
//	if err != nil { return nil, err }
//	done, err := jobs.AwaitChildren(ctx, time.Minute)
//	if err != nil { return nil, err } // still waiting (snooze) or a failure
//	... build the result from done ...

// ChildSpec describes one child job. The child belongs to the parent's
// user and is validated like any job (secret fields are sealed).
type ChildSpec struct {
	Type        string
	Payload     json.RawMessage
	Priority    int
	MaxAttempts int
}

// childCreator creates child jobs; *Service is one.
type childCreator interface {
	CreateChild(ctx context.Context, parent *models.Job, index int, spec ChildSpec) (*models.Job, error)
}

var _ childCreator = (*Service)(nil)

// CreateChild creates (or, on a retry of the parent, finds) the parent's
// child number index. The child expires at its own default (see
// CreateRequest.ExpiresAt) or at its parent's expiry, whichever is
// earlier.
func (s *Service) CreateChild(ctx context.Context, parent *models.Job, index int, spec ChildSpec) (*models.Job, error) {
	parentID := parent.ID
	job, _, err := s.Create(ctx, CreateRequest{
		UserID:          parent.UserID,
		Type:            spec.Type,
		Payload:         spec.Payload,
		Priority:        spec.Priority,
		MaxAttempts:     spec.MaxAttempts,
		IdempotencyKey:  fmt.Sprintf("child:%d:%d", parent.ID, index),
		ParentID:        &parentID,
		parentExpiresAt: parent.ExpiresAt,
	})
	if err != nil {
		return nil, fmt.Errorf("create child %d of job %d: %w", index, parent.ID, err)
	}
	// A cancel of the parent that read its children before this one was
	// stored missed it: cancel it too. (One that reads them after finds it
	// itself.)
	cancelled, err := s.store.ParentCancelled(ctx, parentID)
	if err != nil {
		return nil, fmt.Errorf("create child %d of job %d: %w: %w", index, parent.ID, ErrUnavailable, err)
	}
	if cancelled {
		if _, err := s.fin.cancel(ctx, nil, job.ID); err != nil {
			s.log.Warn("child of a cancelled job not cancelled", "job_id", job.ID, "parent_id", parentID, "err", err)
		}
		return nil, fmt.Errorf("create child %d of job %d: the parent was %w", index, parent.ID, ErrCancelled)
	}
	return job, nil
}

// SpawnChildren creates the running job's children, once: calling it again
// (a retry) returns the same children. It returns their ids in order.
func SpawnChildren(ctx context.Context, specs []ChildSpec) ([]int64, error) {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return nil, ErrNoJob
	}
	if jc.w.cfg.Children == nil {
		return nil, errors.New("spawn children: the worker has no child creator")
	}
	ids := make([]int64, len(specs))
	for i, spec := range specs {
		child, err := jc.w.cfg.Children.CreateChild(ctx, jc.job, i, spec)
		if err != nil {
			var ve *ValidationError
			if errors.As(err, &ve) {
				return nil, Permanent(err)
			}
			return nil, err
		}
		ids[i] = child.ID
	}
	return ids, nil
}

// Children returns the running job's children, in creation order, with
// their results. Secret fields are not decrypted.
func Children(ctx context.Context) ([]models.Job, error) {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return nil, ErrNoJob
	}
	rows, err := jc.w.store.Children(ctx, jc.job.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return rows, nil
}

// AwaitChildren returns the running job's children once every one has
// finished (completed, failed or cancelled). While some still run it
// returns a Snooze error: return it from Handle and the job runs again
// when its last child finishes, or after poll at the latest. The job is
// woken once, by whichever comes last of its own snooze and its last
// child's end, never by a child whose siblings still run.
func AwaitChildren(ctx context.Context, poll time.Duration) ([]models.Job, error) {
	children, err := Children(ctx)
	if err != nil {
		return nil, err
	}
	for _, c := range children {
		if !c.Status.Finished() {
			err := Snooze(poll).(*snoozeError)
			err.forChildren = true
			return nil, err
		}
	}
	return children, nil
}

// snoozeError ends an attempt without counting it.
type snoozeError struct {
	after time.Duration
	// forChildren marks a wait for the job's children (AwaitChildren):
	// after the snooze is recorded the job is woken at once if they all
	// finished meanwhile.
	forChildren bool
}

func (e *snoozeError) Error() string { return fmt.Sprintf("waiting; runs again within %s", e.after) }

// Snooze ends the attempt without counting it against MaxAttempts: the job
// is pending again and runs after d (or sooner, when a child wakes it).
// A snooze whose next run would come after the job's expiry (expiresAt)
// fails the job instead; the waits of AwaitChildren are not bounded by the
// expiry, since the children are bounded themselves.
func Snooze(d time.Duration) error {
	if d <= 0 {
		d = time.Second
	}
	return &snoozeError{after: d}
}

func snoozeOf(err error) (*snoozeError, bool) {
	var s *snoozeError
	if errors.As(err, &s) {
		return s, true
	}
	return nil, false
}
