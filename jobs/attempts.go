package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// AttemptOutcome is how one attempt of a job ended.
type AttemptOutcome string

// The attempt outcomes.
const (
	AttemptCompleted AttemptOutcome = "completed"
	AttemptRetried   AttemptOutcome = "retried"
	AttemptFailed    AttemptOutcome = "failed"
	// AttemptLost: the worker's lease expired (it died or stalled).
	AttemptLost AttemptOutcome = "lost"
	// AttemptReleased: the worker gave the job back unfinished (shutdown).
	AttemptReleased AttemptOutcome = "released"
	// AttemptDeferred: the handler asked to run later (RetryAfter); the
	// attempt does not count against maxAttempts.
	AttemptDeferred AttemptOutcome = "deferred"
	// AttemptCancelled: the job was cancelled while the attempt ran.
	AttemptCancelled AttemptOutcome = "cancelled"
)

// valid reports whether o is one of the outcomes the job_attempts table
// accepts.
func (o AttemptOutcome) valid() bool {
	switch o {
	case AttemptCompleted, AttemptRetried, AttemptFailed, AttemptLost, AttemptReleased, AttemptDeferred, AttemptCancelled:
		return true
	}
	return false
}

// attemptRecord is one finished attempt.
type attemptRecord struct {
	JobID      int64
	Attempt    int
	StartedAt  time.Time
	FinishedAt time.Time
	Outcome    AttemptOutcome
	Error      string
}

// recordAttempt keeps one finished attempt in the job's history, outside
// any transition (the finisher writes the history of the transitions it
// applies with them). A failure is logged only.
//
// A zero StartedAt is stored as unknown (NULL), a zero FinishedAt as now;
// the error is truncated like the job's. The insert runs under ctx: pass a
// context that outlives a cancelled drain when the outcome must be kept.
func recordAttempt(ctx context.Context, db *gorm.DB, log *slog.Logger, r attemptRecord) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("job_id", r.JobID, "attempt", r.Attempt, "outcome", string(r.Outcome))
	defer func() {
		if p := recover(); p != nil {
			log.Error("attempt not recorded: panic", "panic", fmt.Sprint(p))
		}
	}()
	if db == nil {
		log.Warn("attempt not recorded: no database")
		return
	}
	if !r.Outcome.valid() {
		log.Warn("attempt not recorded: unknown outcome")
		return
	}
	a := store.Attempt{JobID: r.JobID, Attempt: r.Attempt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Outcome: string(r.Outcome), Error: r.Error}
	if err := store.New(db).InsertAttempts(ctx, a); err != nil {
		log.Warn("attempt not recorded in the job's history", "err", err)
	}
}

// Attempts returns the history of a user's job: one entry per finished
// attempt, oldest first (by insertion, since attempt numbers restart at 1
// after a retry). Another user's job is ErrNotFound.
func (s *Service) Attempts(ctx context.Context, userID string, jobID int64) ([]models.JobAttempt, error) {
	rows, err := s.store.Attempts(ctx, ownerScope(userID), jobID)
	if err != nil {
		return nil, fmt.Errorf("job %d attempts: %w: %w", jobID, ErrUnavailable, err)
	}
	if len(rows) == 0 {
		// No history, or no such job for this user: tell them apart.
		if _, err := s.Get(ctx, userID, jobID); err != nil {
			return nil, err
		}
		return []models.JobAttempt{}, nil
	}
	return rows, nil
}
