package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/models"
)

// The statuses of a job's effect.
const (
	// EffectIntent: the step is about to run, or ran and its outcome is
	// unknown (no provider id recorded).
	EffectIntent = "intent"
	// EffectDone: the step ran and its provider id is recorded.
	EffectDone = "done"
)

// Effect is one irreversible step of a job, as recorded in job_effects.
type Effect struct {
	JobID  int64  `gorm:"column:job_id"`
	Name   string `gorm:"column:name"`
	Key    string `gorm:"column:key"`
	Status string `gorm:"column:status"`
	// ProviderID is set once the step is done.
	ProviderID *string `gorm:"column:provider_id"`
	// Attempt recorded the latest intent.
	Attempt int `gorm:"column:attempt"`
	// CreatedAt is when the latest intent was recorded.
	CreatedAt time.Time `gorm:"column:created_at"`
	UpdatedAt time.Time `gorm:"column:updated_at"`
}

// TableName is the table of Effect.
func (Effect) TableName() string { return "job_effects" }

// fenceWhere is the fence (see fence) as SQL on the jobs table, for
// statements on other tables that must hold the job's claim.
func fenceWhere(f Fence) (string, []any) {
	q := "id = ? AND status = ? AND attempts = ?"
	args := []any{f.ID, models.StatusProcessing, f.Attempt}
	if f.LeaseID != nil {
		q += " AND lease_id = ?"
		args = append(args, *f.LeaseID)
	}
	return q, args
}

// lockFence locks the fenced job row for share on Postgres, so that a
// concurrent transition of the job (a reap, a cancel) waits for the effect
// write or makes it see the row moved on: without the lock a write could
// pass the fence while the reap commits, and land after the next attempt
// read the effect. SQLite runs one writer at a time.
func (s *Store) lockFence() string {
	if s.postgres {
		return " FOR SHARE"
	}
	return ""
}

// Effect returns a job's recorded effect name/key, or nil when there is
// none.
func (s *Store) Effect(ctx context.Context, jobID int64, name, key string) (*Effect, error) {
	var e Effect
	err := s.db.WithContext(ctx).Where("job_id = ? AND name = ? AND key = ?", jobID, name, key).Take(&e).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read effect %s/%s of job %d: %w", name, key, jobID, err)
	}
	return &e, nil
}

// EffectIDsDone returns the provider ids that jobs other than jobID
// recorded done for effects named name, in records updated at or after
// since.
func (s *Store) EffectIDsDone(ctx context.Context, name string, jobID int64, since time.Time) ([]string, error) {
	var ids []string
	err := s.db.WithContext(ctx).Model(&Effect{}).
		Where("name = ? AND updated_at >= ? AND status = ? AND job_id <> ?", name, since.UTC(), EffectDone, jobID).
		Pluck("provider_id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("read the recent outcomes of effect %s: %w", name, err)
	}
	return ids, nil
}

// RecordEffectIntent records, in one statement, that the running job
// holding f is about to run its effect name/key: status intent, the
// fence's attempt, now. An earlier intent is replaced; a done effect is
// left as it is. It reports false when nothing was written: the job no
// longer holds f, or the effect is done.
func (s *Store) RecordEffectIntent(ctx context.Context, f Fence, name, key string, now time.Time) (bool, error) {
	now = now.UTC()
	where, args := fenceWhere(f)
	q := `INSERT INTO job_effects (job_id, name, key, status, provider_id, attempt, created_at, updated_at)
SELECT id, ?, ?, ?, NULL, attempts, ?, ? FROM jobs WHERE ` + where + s.lockFence() + `
ON CONFLICT (job_id, name, key) DO UPDATE SET status = excluded.status, provider_id = NULL, attempt = excluded.attempt,
  created_at = excluded.created_at, updated_at = excluded.updated_at
WHERE job_effects.status <> ?`
	all := append([]any{name, key, EffectIntent, now, now}, args...)
	all = append(all, EffectDone)
	res := s.db.WithContext(ctx).Exec(q, all...)
	if res.Error != nil {
		return false, fmt.Errorf("record the intent of effect %s/%s of job %d: %w", name, key, f.ID, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// RecordEffectDone records, in one statement, the provider id of the
// effect name/key of the running job holding f, whose intent is recorded:
// status done, under f's attempt. The id comes from the step this attempt
// ran, or from a check that found the step an earlier attempt ran. It
// reports false when nothing was written: the job no longer holds f, or
// the effect has no intent (none recorded, or already done).
func (s *Store) RecordEffectDone(ctx context.Context, f Fence, name, key, providerID string, now time.Time) (bool, error) {
	where, args := fenceWhere(f)
	q := `UPDATE job_effects SET status = ?, provider_id = ?, attempt = ?, updated_at = ?
WHERE job_id = ? AND name = ? AND key = ? AND status = ?
  AND EXISTS (SELECT 1 FROM jobs WHERE ` + where + s.lockFence() + `)`
	all := append([]any{EffectDone, providerID, f.Attempt, now.UTC(), f.ID, name, key, EffectIntent}, args...)
	res := s.db.WithContext(ctx).Exec(q, all...)
	if res.Error != nil {
		return false, fmt.Errorf("record the outcome of effect %s/%s of job %d: %w", name, key, f.ID, res.Error)
	}
	return res.RowsAffected > 0, nil
}
