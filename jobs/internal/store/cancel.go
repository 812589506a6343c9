package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/jobhook/jobhook/models"
)

// CancelledJob is one job a cancel ended, as it was just before.
type CancelledJob struct {
	ID int64
	// Type is the job's type.
	Type string
	// From is the status the job was cancelled from: pending, scheduled
	// or processing.
	From     models.Status
	Priority int
	// ParentID is the job's parent, if any.
	ParentID *int64
	// Attempt and LeaseID are the claim of a job cancelled while it ran
	// (From processing): the one its handler holds.
	Attempt int
	LeaseID *string
	// MessageID is the delayed delivery of a scheduled job, to withdraw.
	MessageID *string
}

// Fence is the claim of a job cancelled while it ran.
func (c CancelledJob) Fence() Fence { return Fence{ID: c.ID, Attempt: c.Attempt, LeaseID: c.LeaseID} }

// cancellable are the statuses a cancel ends: every unfinished one.
var cancellable = []models.Status{models.StatusPending, models.StatusScheduled, models.StatusProcessing}

// CancelledAttemptError is the error the history records for an attempt
// cancelled while it ran.
const CancelledAttemptError = "cancelled while running"

// cancelColumns are the columns a cancel reads before it writes.
var cancelColumns = []string{"id", "type", "status", "priority", "parent_id", "attempts", "started_at", "lease_id", "qstash_message_id"}

// CancelTree cancels the unfinished job id (owner's, when owner is not
// nil) and every unfinished descendant of it, in one transaction: each
// becomes cancelled, with its lease cleared and completed_at set, and a
// job that was running gets a "cancelled" attempt in its history. Finished
// descendants stay as they are. It returns the jobs it cancelled, id
// first, then its descendants level by level; none when id is finished,
// another user's or unknown.
//
// On Postgres the rows are locked before they are read, so a concurrent
// claim or outcome either lands first (and the job is not cancelled, or
// cancelled from its new status) or waits and then finds the job
// cancelled: a job never ends both completed and cancelled.
func (s *Store) CancelTree(ctx context.Context, owner *string, id int64, now time.Time) ([]CancelledJob, error) {
	var out []CancelledJob
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		out, err = s.cancelTree(tx, owner, id, now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w", id, err)
	}
	return out, nil
}

// cancelTree is CancelTree inside the transaction tx.
func (s *Store) cancelTree(tx *gorm.DB, owner *string, id int64, now time.Time) ([]CancelledJob, error) {
	now = now.UTC()
	read := func(q *gorm.DB) ([]models.Job, error) {
		q = owned(q.Model(&models.Job{}).Select(cancelColumns).Where("status IN ?", cancellable), owner).Order("id")
		if s.postgres {
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		var rows []models.Job
		if err := q.Find(&rows).Error; err != nil {
			return nil, err
		}
		return rows, nil
	}
	rows, err := read(tx.Where("id = ?", id))
	if err != nil || len(rows) == 0 {
		return nil, err
	}
	seen := map[int64]bool{id: true}
	for level := rows; len(level) > 0; {
		parents := make([]int64, len(level))
		for i, r := range level {
			parents[i] = r.ID
		}
		kids, err := read(tx.Where("parent_id IN ?", parents))
		if err != nil {
			return nil, fmt.Errorf("children: %w", err)
		}
		level = level[:0:0]
		for _, k := range kids {
			if !seen[k.ID] {
				seen[k.ID] = true
				level = append(level, k)
			}
		}
		rows = append(rows, level...)
	}
	ids := make([]int64, len(rows))
	out := make([]CancelledJob, len(rows))
	var history []models.JobAttempt
	created := time.Now().UTC()
	for i, r := range rows {
		ids[i] = r.ID
		out[i] = CancelledJob{ID: r.ID, Type: r.Type, From: r.Status, Priority: r.Priority, ParentID: r.ParentID, MessageID: r.QStashMessageID}
		if r.Status == models.StatusProcessing {
			out[i].Attempt, out[i].LeaseID = r.Attempts, r.LeaseID
			var started time.Time
			if r.StartedAt != nil {
				started = *r.StartedAt
			}
			history = append(history, attemptRow(r.ID, r.Attempts, started, now, "cancelled", CancelledAttemptError, created))
		}
	}
	res := tx.Model(&models.Job{}).Where("id IN ? AND status IN ?", ids, cancellable).
		Updates(map[string]any{"status": models.StatusCancelled, "completed_at": now, "updated_at": now, "lease_expires_at": nil, "lease_id": nil})
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected != int64(len(ids)) {
		// Only without row locks could a job move between the read and
		// the write; the transaction is then retried as a whole.
		return nil, fmt.Errorf("%d of %d jobs changed while being cancelled", int64(len(ids))-res.RowsAffected, len(ids))
	}
	if len(history) > 0 {
		if err := tx.Create(&history).Error; err != nil {
			return nil, fmt.Errorf("record cancelled attempts: %w", err)
		}
	}
	return out, nil
}

// CancelledAmong returns the ids, of those given, whose job is cancelled.
func (s *Store) CancelledAmong(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []int64
	if err := s.db.WithContext(ctx).Model(&models.Job{}).Where("id IN ? AND status = ?", ids, models.StatusCancelled).
		Pluck("id", &out).Error; err != nil {
		return nil, fmt.Errorf("look up cancelled jobs: %w", err)
	}
	return out, nil
}

// ParentCancelled reports whether job id is cancelled, waiting on Postgres
// for a cancel in flight that holds its row to commit: a child created
// under a parent that a cancel just ended is found by one of the two, the
// cancel (which reads the children after locking the parent) or this
// check (which runs after the child's insert).
func (s *Store) ParentCancelled(ctx context.Context, id int64) (bool, error) {
	q := s.db.WithContext(ctx).Model(&models.Job{}).Select("status").Where("id = ?", id)
	if s.postgres {
		q = q.Clauses(clause.Locking{Strength: "SHARE"})
	}
	var rows []models.Job
	if err := q.Find(&rows).Error; err != nil {
		return false, fmt.Errorf("look up job %d: %w", id, err)
	}
	return len(rows) == 1 && rows[0].Status == models.StatusCancelled, nil
}
