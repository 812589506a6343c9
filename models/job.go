package models

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status is where a job is in its lifecycle.
//
// scheduled → pending → processing → completed; processing → pending (retry,
// after backoff) → failed after MaxAttempts; pending|scheduled|processing →
// cancelled.
type Status string

// The job statuses.
const (
	StatusPending    Status = "pending"
	StatusScheduled  Status = "scheduled"
	StatusProcessing Status = "processing"
	StatusCompleted  Status = "completed"
	StatusFailed     Status = "failed"
	StatusCancelled  Status = "cancelled"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{StatusScheduled, StatusPending, StatusProcessing, StatusCompleted, StatusFailed, StatusCancelled}

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Finished reports whether s is a final status: completed, failed or cancelled.
func (s Status) Finished() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Priority bounds: larger runs first.
const (
	MinPriority = 0
	MaxPriority = 999999
)

// MaxAttempts bounds and default.
const (
	MinMaxAttempts     = 1
	MaxMaxAttempts     = 25
	DefaultMaxAttempts = 3
)

// Job is one unit of background work, as stored in the jobs table.
type Job struct {
	ID             int64      `gorm:"column:id;primaryKey;autoIncrement" json:"id"`
	UserID         string     `gorm:"column:user_id" json:"userId"`
	Type           string     `gorm:"column:type" json:"type"`
	Status         Status     `gorm:"column:status" json:"status"`
	Priority       int        `gorm:"column:priority" json:"priority"`
	Payload        JSON       `gorm:"column:payload" json:"payload"`
	Result         JSON       `gorm:"column:result" json:"result,omitempty"`
	Error          string     `gorm:"column:error" json:"error,omitempty"`
	Attempts       int        `gorm:"column:attempts" json:"attempts"`
	MaxAttempts    int        `gorm:"column:max_attempts" json:"maxAttempts"`
	ScheduledFor   *time.Time `gorm:"column:scheduled_for" json:"scheduledFor,omitempty"`
	NextRunAt      time.Time  `gorm:"column:next_run_at" json:"nextRunAt"`
	StartedAt      *time.Time `gorm:"column:started_at" json:"startedAt,omitempty"`
	CompletedAt    *time.Time `gorm:"column:completed_at" json:"completedAt,omitempty"`
	CreatedAt      time.Time  `gorm:"column:created_at;autoCreateTime:false" json:"createdAt"`
	UpdatedAt      time.Time  `gorm:"column:updated_at;autoUpdateTime:false" json:"updatedAt"`
	IdempotencyKey *string    `gorm:"column:idempotency_key" json:"idempotencyKey,omitempty"`
	// ParentID is the job that created this one as a child, if any.
	ParentID *int64 `gorm:"column:parent_id" json:"parentId,omitempty"`
	// QStashMessageID is the delayed message that delivers a scheduled job.
	QStashMessageID *string `gorm:"column:qstash_message_id" json:"-"`
	// LeaseExpiresAt is when a processing job's worker counts as lost,
	// unless its heartbeat renews the lease first.
	LeaseExpiresAt *time.Time `gorm:"column:lease_expires_at" json:"leaseExpiresAt,omitempty"`
	// LeaseID identifies the claim that holds the lease; with Attempts it
	// fences every write after the claim, so a worker that lost its lease
	// can never write over a newer claim (even after a manual retry reset
	// the attempt count).
	LeaseID *string `gorm:"column:lease_id" json:"-"`
	// Checkpoint is the progress a handler saved with jobs.SaveCheckpoint,
	// handed back on the next attempt.
	Checkpoint JSON `gorm:"column:checkpoint" json:"checkpoint,omitempty"`
	// LostAttempts counts the attempts in a row whose worker was lost (its
	// lease expired). They do not count against MaxAttempts; a job lost
	// too many times in a row fails. A real outcome resets it.
	LostAttempts int `gorm:"column:lost_attempts" json:"lostAttempts"`
	// ExpiresAt bounds the job's waits: a RetryAfter or a snooze that
	// would run it after ExpiresAt fails it instead. Nil is no bound.
	ExpiresAt *time.Time `gorm:"column:expires_at" json:"expiresAt,omitempty"`
	// FlowKeys are the external accounts and resources the job's work
	// counts against (see jobs.FlowKeyer), computed when it is created.
	FlowKeys FlowKeys `gorm:"column:flow_keys" json:"flowKeys,omitempty"`
	// TraceParent is the W3C traceparent of the create that made the job
	// (its span when tracing is on; empty when it is off). Each attempt's
	// span is its child.
	TraceParent string `gorm:"column:trace_parent" json:"traceParent,omitempty"`
	// WaitingFor, on a pending job held back by a flow key, says which
	// key, until when and why. It is read from the queue, never stored.
	WaitingFor *WaitingFor `gorm:"-" json:"waitingFor,omitempty"`
}

// FlowKeys is a job's list of flow keys, stored as one space-separated
// text column.
type FlowKeys []string

// Value stores the keys space-separated (empty for none).
func (k FlowKeys) Value() (driver.Value, error) { return strings.Join(k, " "), nil }

// Scan reads the keys from a text column.
func (k *FlowKeys) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*k = nil
	case string:
		*k = strings.Fields(v)
	case []byte:
		*k = strings.Fields(string(v))
	default:
		return fmt.Errorf("models.FlowKeys: cannot scan %T", src)
	}
	return nil
}

// WaitingFor says why a pending job is held back: the flow key, when the
// key's pause or rate window ends (nil while it waits for a free slot of
// the key's concurrency limit), and the reason, such as "business use
// case usage 97%" or "concurrency limit 1 reached".
type WaitingFor struct {
	Key    string     `json:"key"`
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason"`
}

// TableName is the jobs table.
func (Job) TableName() string { return "jobs" }

// JSON is a JSON document stored as JSONB on Postgres and TEXT on SQLite.
// A nil JSON is SQL NULL and marshals as null.
type JSON json.RawMessage

// MarshalJSON returns the document itself, or null when empty.
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return []byte(j), nil
}

// UnmarshalJSON keeps a copy of the raw document.
func (j *JSON) UnmarshalJSON(b []byte) error {
	if j == nil {
		return errors.New("models.JSON: UnmarshalJSON on nil pointer")
	}
	*j = append((*j)[:0], b...)
	return nil
}

// Value stores the document as text (NULL when empty).
func (j JSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return nil, nil
	}
	return string(j), nil
}

// Scan reads a document from a text or byte column.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append(JSON(nil), v...)
	case string:
		*j = JSON(v)
	default:
		return fmt.Errorf("models.JSON: cannot scan %T", src)
	}
	return nil
}

// GormDataType tells GORM the generic type of the column.
func (JSON) GormDataType() string { return "json" }
