package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jobhook/jobhook/models"
)

// StatusTypeCount is how many jobs of one type are in one status.
type StatusTypeCount struct {
	Status models.Status
	Type   string
	Count  int64
}

// MinuteStatusCount is how many jobs reached one final status in the
// minute that starts at Minute (Unix minutes: seconds since the epoch
// divided by 60).
type MinuteStatusCount struct {
	Minute int64
	Status models.Status
	Count  int64
}

// unfinished and finished are the statuses each count reads.
var (
	unfinished = []models.Status{models.StatusPending, models.StatusScheduled, models.StatusProcessing}
	finished   = []models.Status{models.StatusCompleted, models.StatusFailed, models.StatusCancelled}
)

// OpenCounts counts the unfinished jobs (pending, scheduled, processing)
// by status and type; a non-nil owner counts only the owner's.
func (s *Store) OpenCounts(ctx context.Context, owner *string) ([]StatusTypeCount, error) {
	var rows []StatusTypeCount
	err := owned(s.db.WithContext(ctx).Table("jobs"), owner).
		Select("status, type, COUNT(*) AS count").
		Where("status IN ?", unfinished).
		Group("status, type").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count unfinished jobs: %w", err)
	}
	return rows, nil
}

// FinishedCounts counts the jobs that finished (completed, failed,
// cancelled) at since or later, by status and type; a non-nil owner
// counts only the owner's.
func (s *Store) FinishedCounts(ctx context.Context, owner *string, since time.Time) ([]StatusTypeCount, error) {
	var rows []StatusTypeCount
	err := owned(s.db.WithContext(ctx).Table("jobs"), owner).
		Select("status, type, COUNT(*) AS count").
		Where("status IN ? AND completed_at >= ?", finished, since.UTC()).
		Group("status, type").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count finished jobs: %w", err)
	}
	return rows, nil
}

// FinishedPerMinute counts the jobs that finished at since or later by
// the minute they finished in and their final status; a non-nil owner
// counts only the owner's.
func (s *Store) FinishedPerMinute(ctx context.Context, owner *string, since time.Time) ([]MinuteStatusCount, error) {
	minute := "CAST(strftime('%s', completed_at) AS INTEGER) / 60"
	if s.postgres {
		minute = "CAST(FLOOR(EXTRACT(EPOCH FROM completed_at) / 60) AS BIGINT)"
	}
	var rows []MinuteStatusCount
	err := owned(s.db.WithContext(ctx).Table("jobs"), owner).
		Select(minute+" AS minute, status, COUNT(*) AS count").
		Where("status IN ? AND completed_at >= ?", finished, since.UTC()).
		Group("minute, status").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count finished jobs per minute: %w", err)
	}
	return rows, nil
}
