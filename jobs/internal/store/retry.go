package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/jobhook/jobhook/models"
)

// retryable are the statuses a manual retry starts again.
var retryable = []models.Status{models.StatusFailed, models.StatusCancelled}

// RetriedJob is one job a retry made pending again.
type RetriedJob struct {
	ID       int64
	Priority int
	UserID   string
	Type     string
	FlowKeys models.FlowKeys
}

// RetryTree makes the failed or cancelled job id (owner's, when owner is
// not nil) pending again, due now, with a fresh budget: no attempts
// (counted or lost), no error, no result. Every failed or cancelled job
// below it (its children, theirs, …) starts again with it, so that a
// parent that finds its children again by their keys (a carousel) does
// not find them failed or cancelled; descendants that completed stay as
// they are. A job whose expiry passed gets a new one, as far from now as
// it was from the job's start (its scheduled time, or its creation). It
// returns the jobs it reset, id first; none when id is neither failed nor
// cancelled, another user's or unknown. One transaction; on Postgres the
// rows are locked before they are read, like a cancel's.
func (s *Store) RetryTree(ctx context.Context, owner *string, id int64, now time.Time) ([]RetriedJob, error) {
	var out []RetriedJob
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		out, err = s.retryTree(tx, owner, id, now.UTC())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retry job %d: %w", id, err)
	}
	return out, nil
}

func (s *Store) retryTree(tx *gorm.DB, owner *string, id int64, now time.Time) ([]RetriedJob, error) {
	read := func(q *gorm.DB) ([]models.Job, error) {
		q = owned(q.Model(&models.Job{}).Select("id", "status", "priority", "created_at", "scheduled_for", "expires_at", "user_id", "type", "flow_keys"), owner).Order("id")
		if s.postgres {
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		var rows []models.Job
		if err := q.Find(&rows).Error; err != nil {
			return nil, err
		}
		return rows, nil
	}
	root, err := read(tx.Where("id = ? AND status IN ?", id, retryable))
	if err != nil || len(root) == 0 {
		return nil, err
	}
	// Every descendant is read (a completed child's own children may have
	// failed); only the failed and cancelled ones start again.
	reset := root
	seen := map[int64]bool{id: true}
	for level := []int64{id}; len(level) > 0; {
		kids, err := read(tx.Where("parent_id IN ?", level))
		if err != nil {
			return nil, fmt.Errorf("children: %w", err)
		}
		level = level[:0:0]
		for _, k := range kids {
			if seen[k.ID] {
				continue
			}
			seen[k.ID] = true
			level = append(level, k.ID)
			if k.Status == models.StatusFailed || k.Status == models.StatusCancelled {
				reset = append(reset, k)
			}
		}
	}
	out := make([]RetriedJob, 0, len(reset))
	for _, r := range reset {
		cols := map[string]any{
			"status":           models.StatusPending,
			"attempts":         0,
			"lost_attempts":    0,
			"error":            "",
			"result":           nil,
			"completed_at":     nil,
			"lease_expires_at": nil,
			"lease_id":         nil,
			"next_run_at":      now,
			"updated_at":       now,
		}
		if r.ExpiresAt != nil && !r.ExpiresAt.After(now) {
			start := r.CreatedAt
			if r.ScheduledFor != nil {
				start = *r.ScheduledFor
			}
			cols["expires_at"] = now.Add(max(r.ExpiresAt.Sub(start), 0))
		}
		res := tx.Model(&models.Job{}).Where("id = ? AND status IN ?", r.ID, retryable).Updates(cols)
		if res.Error != nil {
			return nil, fmt.Errorf("job %d: %w", r.ID, res.Error)
		}
		if res.RowsAffected == 1 {
			out = append(out, RetriedJob{ID: r.ID, Priority: r.Priority, UserID: r.UserID, Type: r.Type, FlowKeys: r.FlowKeys})
		}
	}
	return out, nil
}
