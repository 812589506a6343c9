package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jobhook/jobhook/models"
)

// finishedStatuses are the statuses a job never leaves on its own.
var finishedStatuses = []models.Status{models.StatusCompleted, models.StatusFailed, models.StatusCancelled}

// DeleteFinished deletes up to limit top-level jobs in one of statuses
// that finished before before, oldest first, each with its children (and
// theirs), attempts and effects (ON DELETE CASCADE), and returns how many
// top-level jobs it deleted. A job with a child that has not finished is
// kept, whatever its own status. One statement.
func (s *Store) DeleteFinished(ctx context.Context, statuses []models.Status, before time.Time, limit int) (int64, error) {
	unfinishedChild := s.db.Table("jobs AS c").Select("1").
		Where("c.parent_id = j.id AND c.status NOT IN ?", finishedStatuses)
	oldest := s.db.Table("jobs AS j").Select("j.id").
		Where("j.parent_id IS NULL AND j.status IN ? AND j.completed_at < ? AND NOT EXISTS (?)", statuses, before.UTC(), unfinishedChild).
		Order("j.completed_at").Limit(limit)
	res := s.db.WithContext(ctx).Where("id IN (?)", oldest).Delete(&models.Job{})
	if res.Error != nil {
		return 0, fmt.Errorf("delete finished jobs: %w", res.Error)
	}
	return res.RowsAffected, nil
}
