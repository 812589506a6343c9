package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/models"
)

// ErrNotFound is returned by Get when the job does not exist or is not
// the owner's.
var ErrNotFound = errors.New("job not found")

// Get returns a job; a non-nil owner must be its user.
func (s *Store) Get(ctx context.Context, owner *string, id int64) (*models.Job, error) {
	var job models.Job
	err := owned(s.db.WithContext(ctx), owner).Where("id = ?", id).Take(&job).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get job %d: %w", id, err)
	}
	return &job, nil
}

// ListFilter selects the jobs List returns; zero fields do not filter.
type ListFilter struct {
	// Owner, when not nil, is the jobs' user.
	Owner  *string
	Status models.Status
	Type   string
	// ParentID, when not zero, keeps the children of that job.
	ParentID int64
	// CreatedFrom and CreatedTo, when not zero, keep the jobs created in
	// [CreatedFrom, CreatedTo).
	CreatedFrom, CreatedTo time.Time
	// ErrorContains, when not empty, keeps the jobs whose error holds it,
	// in any case.
	ErrorContains string
	// Before, when not zero, keeps the jobs whose id is lower.
	Before int64
	Limit  int
}

// List returns up to f.Limit jobs, newest first.
func (s *Store) List(ctx context.Context, f ListFilter) ([]models.Job, error) {
	q := owned(s.db.WithContext(ctx), f.Owner)
	if f.Status != "" {
		q = q.Where("status = ?", string(f.Status))
	}
	if f.Type != "" {
		q = q.Where("type = ?", f.Type)
	}
	if f.ParentID != 0 {
		q = q.Where("parent_id = ?", f.ParentID)
	}
	if !f.CreatedFrom.IsZero() {
		q = q.Where("created_at >= ?", f.CreatedFrom.UTC())
	}
	if !f.CreatedTo.IsZero() {
		q = q.Where("created_at < ?", f.CreatedTo.UTC())
	}
	if f.ErrorContains != "" {
		q = q.Where(`LOWER(error) LIKE ? ESCAPE '\'`, "%"+escapeLike(strings.ToLower(f.ErrorContains))+"%")
	}
	if f.Before != 0 {
		q = q.Where("id < ?", f.Before)
	}
	var rows []models.Job
	if err := q.Order("id DESC").Limit(f.Limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return rows, nil
}

// Attempts returns a job's history, oldest first (by insertion: attempt
// numbers restart at 1 after a retry); a non-nil owner must be the job's
// user.
func (s *Store) Attempts(ctx context.Context, owner *string, jobID int64) ([]models.JobAttempt, error) {
	var rows []models.JobAttempt
	q := s.db.WithContext(ctx).
		Joins("JOIN jobs ON jobs.id = job_attempts.job_id").
		Where("job_attempts.job_id = ?", jobID)
	if owner != nil {
		q = q.Where("jobs.user_id = ?", *owner)
	}
	if err := q.Order("job_attempts.id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("job %d attempts: %w", jobID, err)
	}
	return rows, nil
}

// PendingPage returns up to limit pending jobs (id, priority, next run,
// user, flow keys)
// with ids above after, by id: the reconciler's pages.
func (s *Store) PendingPage(ctx context.Context, after int64, limit int) ([]models.Job, error) {
	var rows []models.Job
	err := s.db.WithContext(ctx).Select("id", "priority", "next_run_at", "user_id", "type", "flow_keys").
		Where("status = ? AND id > ?", models.StatusPending, after).
		Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list pending jobs: %w", err)
	}
	return rows, nil
}

// likeEscaper escapes the wildcards of LIKE (and its escape character).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// escapeLike makes s match itself literally inside a LIKE pattern whose
// ESCAPE character is a backslash.
func escapeLike(s string) string { return likeEscaper.Replace(s) }
