package models

import "time"

// JobAttempt is one finished attempt of a job, as stored in the
// job_attempts table: when it started and ended, how it ended and why.
// A job keeps its attempts after a retry (POST /api/jobs/:id/retry), whose
// attempt numbers restart at 1, so the history is ordered by ID.
type JobAttempt struct {
	ID    int64 `gorm:"column:id;primaryKey;autoIncrement" json:"-"`
	JobID int64 `gorm:"column:job_id" json:"-"`
	// Attempt is the job's attempt number, from 1.
	Attempt int `gorm:"column:attempt" json:"attempt"`
	// StartedAt is nil when the start is unknown.
	StartedAt  *time.Time `gorm:"column:started_at" json:"startedAt,omitempty"`
	FinishedAt time.Time  `gorm:"column:finished_at" json:"finishedAt"`
	// Outcome is completed, retried, failed, lost (the worker's lease
	// expired), released (the worker gave the job back unfinished),
	// deferred (the handler asked to run again later, as a provider's
	// rate limit says; the attempt does not count) or cancelled (the job
	// was cancelled while it ran).
	Outcome string `gorm:"column:outcome" json:"outcome"`
	// Error is the attempt's error, truncated like the job's.
	Error     string    `gorm:"column:error" json:"error,omitempty"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false" json:"-"`
}

// TableName is the job_attempts table.
func (JobAttempt) TableName() string { return "job_attempts" }
