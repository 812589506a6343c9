package store

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/jobhook/jobhook/models"
)

// Truncate caps s at MaxErrorLength bytes, on a rune boundary, marking the
// cut with an ellipsis.
func Truncate(s string) string {
	if len(s) <= MaxErrorLength {
		return s
	}
	s = s[:MaxErrorLength]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// queueColumns are the columns the queue needs of a job it enqueues: its
// id, priority, user, type and flow keys.
var queueColumns = []clause.Column{{Name: "id"}, {Name: "priority"}, {Name: "user_id"}, {Name: "type"}, {Name: "flow_keys"}}

// claimColumns are the columns a claim reads back: everything a handler
// and the engine use, without the previous attempt's error and result and
// the bookkeeping columns.
var claimColumns = []clause.Column{
	{Name: "id"}, {Name: "user_id"}, {Name: "type"}, {Name: "status"}, {Name: "priority"}, {Name: "payload"},
	{Name: "attempts"}, {Name: "max_attempts"}, {Name: "scheduled_for"}, {Name: "next_run_at"}, {Name: "started_at"},
	{Name: "created_at"}, {Name: "idempotency_key"}, {Name: "parent_id"}, {Name: "lease_expires_at"}, {Name: "lease_id"},
	{Name: "checkpoint"}, {Name: "lost_attempts"}, {Name: "expires_at"}, {Name: "flow_keys"}, {Name: "trace_parent"},
}

// asyncCommit, a condition that always holds, makes the transaction of the
// statement it is part of commit without waiting for its WAL to reach disk
// (synchronous_commit off, for that transaction alone). A claim uses it: a
// claim lost in a database crash leaves the row as before the claim, so the
// job runs again, as it would had the crash come a moment earlier; a job's
// outcome, whose commit waits, flushes the claim's WAL before its own.
const asyncCommit = "set_config('synchronous_commit', 'off', true) IS NOT NULL"

// Claim moves the pending, due rows among ids to processing in one
// statement, under the lease leaseID, and returns them (in no particular
// order) with the columns a handler uses: Result, Error, CompletedAt,
// UpdatedAt and QStashMessageID are left zero. A claim is safe to retry
// with the same leaseID (as after a connection lost before its reply):
// rows it already claimed are returned again, unchanged.
func (s *Store) Claim(ctx context.Context, ids []int64, now time.Time, lease time.Duration, leaseID string) ([]models.Job, error) {
	now = now.UTC()
	var rows []models.Job
	db := s.db.WithContext(ctx)
	if s.postgres {
		db = db.Where(asyncCommit)
	}
	err := db.Model(&rows).Clauses(clause.Returning{Columns: claimColumns}).
		// The conditions on the row are a CASE, which no index serves, so
		// the planner finds the rows by id (the primary key) whatever its
		// statistics say: written as an OR of status conditions it may
		// scan the partial index of every due pending job instead (it did,
		// from stale statistics after a bulk load: 7 ms a claim).
		Where("id IN ? AND CASE WHEN status = ? THEN next_run_at <= ? WHEN status = ? THEN lease_id = ? ELSE false END",
			ids, models.StatusPending, now, models.StatusProcessing, leaseID).
		Updates(map[string]any{
			"status":           models.StatusProcessing,
			"attempts":         gorm.Expr("CASE WHEN status = ? THEN attempts + 1 ELSE attempts END", models.StatusPending),
			"started_at":       gorm.Expr("CASE WHEN status = ? THEN ? ELSE started_at END", models.StatusPending, now),
			"lease_expires_at": now.Add(lease),
			"lease_id":         leaseID,
			"updated_at":       now,
		}).Error
	if err != nil {
		return nil, fmt.Errorf("mark jobs processing: %w", err)
	}
	return rows, nil
}

// Lookup returns the id, status, priority, next run time, user and flow
// keys of the rows among ids.
func (s *Store) Lookup(ctx context.Context, ids []int64) ([]models.Job, error) {
	var rows []models.Job
	if err := s.db.WithContext(ctx).Select("id", "status", "priority", "next_run_at", "user_id", "type", "flow_keys").
		Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("look up jobs: %w", err)
	}
	return rows, nil
}

// PromoteScheduled moves up to limit scheduled jobs due by now to pending
// and returns what the queue needs of them (queueColumns).
func (s *Store) PromoteScheduled(ctx context.Context, now time.Time, limit int) ([]models.Job, error) {
	now = now.UTC()
	var rows []models.Job
	sub := s.db.Model(&models.Job{}).Select("id").
		Where("status = ? AND next_run_at <= ?", models.StatusScheduled, now).Order("next_run_at").Limit(limit)
	err := s.db.WithContext(ctx).Model(&rows).
		Clauses(clause.Returning{Columns: queueColumns}).
		Where("id IN (?) AND status = ?", sub, models.StatusScheduled).
		Updates(map[string]any{"status": models.StatusPending, "updated_at": now}).Error
	if err != nil {
		return nil, fmt.Errorf("promote scheduled jobs: %w", err)
	}
	return rows, nil
}

// renewBatch renews the leases of many running jobs in one statement: each
// fence is one row of v, and only the rows still holding their claim are
// renewed and returned. The VALUES list is a CTE with named columns, which
// Postgres and SQLite (3.33 and later, for UPDATE ... FROM) both accept.
const renewBatch = `WITH v(fence_id, fence_attempt, fence_lease_id) AS (VALUES %s)
UPDATE jobs SET lease_expires_at = ?
FROM v
WHERE jobs.id = v.fence_id AND jobs.status = 'processing' AND jobs.attempts = v.fence_attempt
  AND (v.fence_lease_id IS NULL OR jobs.lease_id = v.fence_lease_id)
RETURNING id`

const renewRow = "(CAST(? AS bigint), CAST(? AS integer), CAST(? AS text))"

// renewChunk bounds the fences of one renewal statement (3 parameters
// each, far below Postgres's 65,535 and SQLite's 32,766).
const renewChunk = 5000

// RenewMany extends the leases of running jobs to until, one statement per
// renewChunk fences, and returns the ids of the jobs that still hold the
// claim of their fence (in no particular order). A fence missing from the
// result has lost its claim: the row was reaped, cancelled or claimed
// again.
func (s *Store) RenewMany(ctx context.Context, fences []Fence, until time.Time) ([]int64, error) {
	until = until.UTC()
	var renewed []int64
	for start := 0; start < len(fences); start += renewChunk {
		chunk := fences[start:min(start+renewChunk, len(fences))]
		values := make([]string, len(chunk))
		args := make([]any, 0, 3*len(chunk)+1)
		for i, f := range chunk {
			values[i] = renewRow
			args = append(args, f.ID, f.Attempt, f.LeaseID)
		}
		args = append(args, until)
		var ids []int64
		q := fmt.Sprintf(renewBatch, strings.Join(values, ", "))
		if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&ids).Error; err != nil {
			return renewed, fmt.Errorf("renew the leases of %d jobs: %w", len(chunk), err)
		}
		renewed = append(renewed, ids...)
	}
	return renewed, nil
}

// SaveCheckpoint stores raw as a running job's checkpoint. It reports
// false when the job no longer holds the claim f.
func (s *Store) SaveCheckpoint(ctx context.Context, f Fence, raw []byte, now time.Time) (bool, error) {
	res := fence(s.db.WithContext(ctx).Model(&models.Job{}), f).
		Updates(map[string]any{"checkpoint": models.JSON(raw), "updated_at": now.UTC()})
	if res.Error != nil {
		return false, fmt.Errorf("save the checkpoint of job %d: %w", f.ID, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// Expired returns up to limit processing jobs whose lease ran out by now.
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]models.Job, error) {
	var rows []models.Job
	if err := s.db.WithContext(ctx).Select("id", "type", "priority", "attempts", "max_attempts", "started_at", "lease_id", "parent_id").
		Where("status = ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)", models.StatusProcessing, now.UTC()).
		Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list expired leases: %w", err)
	}
	return rows, nil
}

// EarliestLease returns when the first lease of a running job ends, or
// nil when no job runs.
func (s *Store) EarliestLease(ctx context.Context) (*time.Time, error) {
	var rows []models.Job
	if err := s.db.WithContext(ctx).Select("lease_expires_at").
		Where("status = ? AND lease_expires_at IS NOT NULL", models.StatusProcessing).
		Order("lease_expires_at").Limit(1).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("earliest lease: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0].LeaseExpiresAt, nil
}

// Children returns a job's children in creation order.
func (s *Store) Children(ctx context.Context, parentID int64) ([]models.Job, error) {
	var rows []models.Job
	if err := s.db.WithContext(ctx).Where("parent_id = ?", parentID).Order("id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("children of job %d: %w", parentID, err)
	}
	return rows, nil
}

// WakeIfChildrenDone makes a waiting (pending, not yet due) parent due now
// when every one of its children has finished, then reads the parent back.
// It returns the parent (id, priority, status, next run) when it is
// pending and due by now, whoever made it so, and nil otherwise.
func (s *Store) WakeIfChildrenDone(ctx context.Context, parentID int64, now time.Time) (*models.Job, error) {
	now = now.UTC()
	db := s.db.WithContext(ctx)
	unfinished := s.db.Model(&models.Job{}).Select("1").
		Where("parent_id = ? AND status NOT IN ?", parentID, []models.Status{models.StatusCompleted, models.StatusFailed, models.StatusCancelled})
	err := db.Model(&models.Job{}).
		Where("id = ? AND status = ? AND next_run_at > ? AND NOT EXISTS (?)", parentID, models.StatusPending, now, unfinished).
		Updates(map[string]any{"next_run_at": now, "updated_at": now}).Error
	if err != nil {
		return nil, fmt.Errorf("wake job %d: %w", parentID, err)
	}
	var parent models.Job
	if err := db.Select("id", "priority", "status", "next_run_at", "user_id", "type", "flow_keys").Take(&parent, parentID).Error; err != nil {
		return nil, fmt.Errorf("look up job %d: %w", parentID, err)
	}
	if parent.Status != models.StatusPending || parent.NextRunAt.After(now) {
		return nil, nil
	}
	return &parent, nil
}

// owned scopes a statement to a user's jobs; a nil owner is any user.
func owned(q *gorm.DB, owner *string) *gorm.DB {
	if owner == nil {
		return q
	}
	return q.Where("user_id = ?", *owner)
}

// Reschedule moves a job that is still in status from, unchanged since
// updatedAt, to status to, running at next, scheduled for at, and, when
// expires is not nil, expiring then. It reports whether the job was moved.
func (s *Store) Reschedule(ctx context.Context, owner *string, id int64, from models.Status, updatedAt time.Time, to models.Status, at, next, now time.Time, expires *time.Time) (bool, error) {
	cols := map[string]any{"status": to, "scheduled_for": at.UTC(), "next_run_at": next.UTC(), "qstash_message_id": nil, "updated_at": now.UTC()}
	if expires != nil {
		cols["expires_at"] = expires.UTC()
	}
	res := owned(s.db.WithContext(ctx).Model(&models.Job{}), owner).
		Where("id = ? AND status = ? AND updated_at = ?", id, from, updatedAt).
		Updates(cols)
	if res.Error != nil {
		return false, fmt.Errorf("reschedule job %d: %w", id, res.Error)
	}
	return res.RowsAffected > 0, nil
}

// Deliver makes a scheduled job whose time is at most by pending, due now,
// and returns it (id and priority), or nil when it is not scheduled by
// then.
func (s *Store) Deliver(ctx context.Context, id int64, by, now time.Time) (*models.Job, error) {
	now = now.UTC()
	var rows []models.Job
	err := s.db.WithContext(ctx).Model(&rows).
		Clauses(clause.Returning{Columns: queueColumns}).
		Where("id = ? AND status = ? AND scheduled_for <= ?", id, models.StatusScheduled, by.UTC()).
		Updates(map[string]any{"status": models.StatusPending, "next_run_at": now, "updated_at": now}).Error
	if err != nil {
		return nil, fmt.Errorf("deliver job %d: %w", id, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}

// SetMessageID records the QStash message that delivers a job still
// scheduled for scheduledFor. It reports false when the job moved on.
func (s *Store) SetMessageID(ctx context.Context, id int64, scheduledFor time.Time, messageID string) (bool, error) {
	res := s.db.WithContext(ctx).Model(&models.Job{}).
		Where("id = ? AND status = ? AND scheduled_for = ?", id, models.StatusScheduled, scheduledFor).
		Update("qstash_message_id", messageID)
	if res.Error != nil {
		return false, fmt.Errorf("record the message of job %d: %w", id, res.Error)
	}
	return res.RowsAffected > 0, nil
}
