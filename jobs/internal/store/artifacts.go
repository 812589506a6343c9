package store

import (
	"context"
	"fmt"
	"time"

	"gorm.io/gorm/clause"
)

// artifactRow is a row of job_artifacts: a file a job wrote, held by
// JobID until no remaining job names it (see the migration 00013).
type artifactRow struct {
	Name      string     `gorm:"column:name;primaryKey"`
	JobID     *int64     `gorm:"column:job_id"`
	CreatedAt time.Time  `gorm:"column:created_at;autoCreateTime:false"`
	Marked    bool       `gorm:"column:marked"`
	DoomedAt  *time.Time `gorm:"column:doomed_at"`
}

func (artifactRow) TableName() string { return "job_artifacts" }

// released selects the artifacts no job holds that are not doomed.
const released = "job_id IS NULL AND doomed_at IS NULL"

// HoldArtifact records that job jobID wrote the file name, held by that
// job. Recording a name again changes nothing.
func (s *Store) HoldArtifact(ctx context.Context, jobID int64, name string, now time.Time) error {
	row := artifactRow{Name: name, JobID: &jobID, CreatedAt: now.UTC()}
	if err := s.db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&row).Error; err != nil {
		return fmt.Errorf("record artifact %s of job %d: %w", name, jobID, err)
	}
	return nil
}

// MarkReleasedArtifacts marks every released artifact (its holder was
// deleted) at the start of a lap, and returns how many it marked.
func (s *Store) MarkReleasedArtifacts(ctx context.Context) (int64, error) {
	res := s.db.WithContext(ctx).Model(&artifactRow{}).Where(released+" AND NOT marked").Update("marked", true)
	if res.Error != nil {
		return 0, fmt.Errorf("mark released artifacts: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// JobText is what of a job may name an artifact: its payload and result,
// as stored (secret fields sealed).
type JobText struct {
	ID      int64
	Payload []byte
	Result  []byte
}

// JobTexts returns the payloads and results of up to limit jobs with ids
// above after, in id order: one range of the primary key.
func (s *Store) JobTexts(ctx context.Context, after int64, limit int) ([]JobText, error) {
	rows, err := s.db.WithContext(ctx).Raw("SELECT id, payload, result FROM jobs WHERE id > ? ORDER BY id LIMIT ?", after, limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("read job texts: %w", err)
	}
	defer rows.Close()
	out := make([]JobText, 0, limit)
	for rows.Next() {
		var t JobText
		if err := rows.Scan(&t.ID, &t.Payload, &t.Result); err != nil {
			return nil, fmt.Errorf("read job texts: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read job texts: %w", err)
	}
	return out, nil
}

// ReleasedAmong returns which of names are released artifacts.
func (s *Store) ReleasedAmong(ctx context.Context, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	var out []string
	if err := s.db.WithContext(ctx).Model(&artifactRow{}).Where("name IN ? AND "+released, names).Pluck("name", &out).Error; err != nil {
		return nil, fmt.Errorf("look up %d artifact names: %w", len(names), err)
	}
	return out, nil
}

// PinArtifact makes job jobID, found naming the released artifact name,
// its holder (unmarked). It reports whether the artifact was still
// released.
func (s *Store) PinArtifact(ctx context.Context, name string, jobID int64) (bool, error) {
	res := s.db.WithContext(ctx).Model(&artifactRow{}).Where("name = ? AND "+released, name).
		Updates(map[string]any{"job_id": jobID, "marked": false})
	if res.Error != nil {
		return false, fmt.Errorf("pin artifact %s to job %d: %w", name, jobID, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// DoomMarkedArtifacts marks for deletion, at the end of a lap, the marked
// artifacts no job was found naming, and returns how many.
func (s *Store) DoomMarkedArtifacts(ctx context.Context, now time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Model(&artifactRow{}).Where("marked AND " + released).
		Updates(map[string]any{"doomed_at": now.UTC(), "marked": false})
	if res.Error != nil {
		return 0, fmt.Errorf("doom artifacts: %w", res.Error)
	}
	return res.RowsAffected, nil
}

// DoomedArtifacts returns up to limit artifacts marked for deletion,
// oldest first.
func (s *Store) DoomedArtifacts(ctx context.Context, limit int) ([]string, error) {
	var out []string
	err := s.db.WithContext(ctx).Model(&artifactRow{}).Where("doomed_at IS NOT NULL").
		Order("doomed_at").Order("name").Limit(limit).Pluck("name", &out).Error
	if err != nil {
		return nil, fmt.Errorf("read doomed artifacts: %w", err)
	}
	return out, nil
}

// ForgetArtifacts deletes the rows of doomed artifacts whose files are
// gone.
func (s *Store) ForgetArtifacts(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if err := s.db.WithContext(ctx).Where("name IN ? AND doomed_at IS NOT NULL", names).Delete(&artifactRow{}).Error; err != nil {
		return fmt.Errorf("forget %d artifacts: %w", len(names), err)
	}
	return nil
}
