// Package chaostask is the job type of the chaos suite (internal/chaos):
// "chaos_record" sleeps for a while and records every call of its handler
// in the table chaos_calls of the app's own database, so that a test can
// tell, after killing processes and servers, how often and when each job's
// handler ran: which attempts were interrupted, whether two calls for one
// job ever overlapped, which process ran what.
//
// jobhook serve registers it only in a binary built with -tags chaos (the
// chaos suite builds one) and run with JOBHOOK_CHAOS_TASKS=true; the
// production binary does not contain this package. Tests may register it
// in-process in any build (Register, app.WithJobTypes).
package chaostask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// Type is the job type's name.
const Type = "chaos_record"

// MaxSleepMs is the largest sleepMs a payload may ask for.
const MaxSleepMs = 10000

// Table is the table every call is recorded in.
const Table = "chaos_calls"

// ClockTable is the one-row table of the counter the calls take their
// start and end ticks from.
const ClockTable = "chaos_clock"

// MaxFlowKeyLength is the longest flowKey a payload may name.
const MaxFlowKeyLength = 200

// Payload is a chaos_record job's payload: {"sleepMs": N, "flowKey": K},
// N from 0 to MaxSleepMs (0 when absent), K a flow key of 1 to
// MaxFlowKeyLength bytes without spaces or control characters (none when
// absent), such as "chaos:acct-1". The chaos suite limits the prefix
// "chaos:" with FLOW_LIMITS.
type Payload struct {
	SleepMs int    `json:"sleepMs"`
	FlowKey string `json:"flowKey,omitempty"`
}

// Handler runs chaos_record jobs. It implements jobs.Handler,
// jobs.PayloadValidator and jobs.FlowKeyer; it sets no timeout of its own,
// so JOB_TIMEOUT bounds it.
type Handler struct {
	db *gorm.DB

	mu    sync.Mutex
	ready bool
}

// Register registers the job type (Type) in reg, recording into db.
func Register(reg *jobs.Registry, db *gorm.DB) error {
	if err := reg.Register(Type, New(db)); err != nil {
		return fmt.Errorf("chaos_record: %w", err)
	}
	return nil
}

// New returns the handler, recording into db (Postgres or SQLite). The
// table is created on first use.
func New(db *gorm.DB) *Handler {
	return &Handler{db: db}
}

var _ jobs.Handler = (*Handler)(nil)
var _ jobs.PayloadValidator = (*Handler)(nil)
var _ jobs.FlowKeyer = (*Handler)(nil)

// ValidatePayload refuses anything but {"sleepMs": 0–10000, "flowKey":
// K} with a *jobs.ValidationError (code invalid_payload).
func (h *Handler) ValidatePayload(payload json.RawMessage) error {
	_, err := ParsePayload(payload)
	return err
}

// FlowKeys returns the payload's flowKey, or no key when it names none
// (jobs.FlowKeyer).
func (h *Handler) FlowKeys(payload json.RawMessage) ([]string, error) {
	p, err := ParsePayload(payload)
	if err != nil {
		return nil, err
	}
	if p.FlowKey == "" {
		return nil, nil
	}
	return []string{p.FlowKey}, nil
}

// ParsePayload decodes and checks a payload.
func ParsePayload(payload []byte) (Payload, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return Payload{}, &jobs.ValidationError{Code: "invalid_payload", Message: `chaos_record payload must be a JSON object such as {"sleepMs": 10}`}
	}
	var p Payload
	var problems []jobs.FieldError
	for name, raw := range fields {
		switch name {
		case "sleepMs":
		case "flowKey":
			if msg := parseFlowKey(raw, &p.FlowKey); msg != "" {
				problems = append(problems, jobs.FieldError{Field: name, Message: msg})
			}
			continue
		default:
			problems = append(problems, jobs.FieldError{Field: name, Message: "unknown field"})
			continue
		}
		if string(raw) == "null" || json.Unmarshal(raw, &p.SleepMs) != nil {
			problems = append(problems, jobs.FieldError{Field: "sleepMs", Message: fmt.Sprintf("must be a whole number from 0 to %d", MaxSleepMs)})
		} else if p.SleepMs < 0 || p.SleepMs > MaxSleepMs {
			problems = append(problems, jobs.FieldError{Field: "sleepMs", Message: fmt.Sprintf("must be from 0 to %d, not %d", MaxSleepMs, p.SleepMs)})
		}
	}
	if len(problems) > 0 {
		slices.SortFunc(problems, func(a, b jobs.FieldError) int { return strings.Compare(a.Field, b.Field) })
		return Payload{}, &jobs.ValidationError{Code: "invalid_payload", Message: "invalid chaos_record payload", Fields: problems}
	}
	return p, nil
}

// parseFlowKey reads a payload's flowKey into key, or says what is wrong
// with it.
func parseFlowKey(raw json.RawMessage, key *string) string {
	msg := fmt.Sprintf("must be a string of 1 to %d bytes without spaces or control characters", MaxFlowKeyLength)
	if json.Unmarshal(raw, key) != nil || *key == "" || len(*key) > MaxFlowKeyLength ||
		strings.ContainsFunc(*key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		*key = ""
		return msg
	}
	return ""
}

// Handle records the call (job id, attempt, the claim's lease id, this
// process's pid, flow key, start time and tick), sleeps sleepMs, records
// the end (time and tick) and returns {"ok":true}. When ctx ends first it
// returns ctx.Err() and the call keeps a NULL finished_at and end_tick.
func (h *Handler) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	if job == nil {
		return nil, jobs.Permanent(errors.New("chaos_record: nil job"))
	}
	p, err := ParsePayload(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	if err := h.ensureTable(ctx); err != nil {
		return nil, err
	}
	lease := ""
	if job.LeaseID != nil {
		lease = *job.LeaseID
	}
	start, err := Tick(ctx, h.db)
	if err != nil {
		return nil, fmt.Errorf("chaos_record: record start: %w", err)
	}
	var id int64
	err = h.db.WithContext(ctx).Raw("INSERT INTO "+Table+" (job_id, attempt, lease_id, pid, flow_key, started_at, start_tick) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
		job.ID, job.Attempts, lease, os.Getpid(), p.FlowKey, time.Now().UTC(), start).Scan(&id).Error
	if err != nil {
		return nil, fmt.Errorf("chaos_record: record start: %w", err)
	}
	if p.SleepMs > 0 {
		timer := time.NewTimer(time.Duration(p.SleepMs) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	finished := time.Now().UTC()
	// A connection killed under this write (the chaos suite does that) must
	// not turn a finished call into an interrupted one: try a few times. A
	// retry takes a later tick, still before the handler returns.
	for try := 0; ; try++ {
		err = h.recordEnd(ctx, id, finished)
		if err == nil || try == 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, fmt.Errorf("chaos_record: record end: %w", err)
	}
	return json.RawMessage(`{"ok":true}`), nil
}

// recordEnd takes the end tick of call id and records it with finished.
func (h *Handler) recordEnd(ctx context.Context, id int64, finished time.Time) error {
	end, err := Tick(ctx, h.db)
	if err != nil {
		return err
	}
	return h.db.WithContext(ctx).Exec("UPDATE "+Table+" SET finished_at = ?, end_tick = ? WHERE id = ?", finished, end, id).Error
}

// Tick advances the counter of ClockTable and returns its new value. Every
// call takes one when it starts and one when it ends; a test takes one to
// mark a moment (such as a kill) on the same clock. A tick taken after
// another committed is larger, whichever process took them.
func Tick(ctx context.Context, db *gorm.DB) (int64, error) {
	var n int64
	if err := db.WithContext(ctx).Raw("UPDATE " + ClockTable + " SET n = n + 1 WHERE id = 1 RETURNING n").Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("chaos_record: tick %s: %w", ClockTable, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("chaos_record: tick %s: no counter row", ClockTable)
	}
	return n, nil
}

// ensureTable creates chaos_calls once per handler; a failure is retried
// on the next call.
func (h *Handler) ensureTable(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ready {
		return nil
	}
	if err := EnsureTable(ctx, h.db); err != nil {
		return err
	}
	h.ready = true
	return nil
}

// EnsureTable creates chaos_calls and chaos_clock when they do not exist.
// Two processes creating them at once on Postgres can collide (a unique
// violation in the catalog); the statements are then tried again.
func EnsureTable(ctx context.Context, db *gorm.DB) error {
	ddl := []string{`CREATE TABLE IF NOT EXISTS ` + Table + ` (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    job_id      BIGINT      NOT NULL,
    attempt     INTEGER     NOT NULL,
    lease_id    TEXT        NOT NULL,
    pid         INTEGER     NOT NULL,
    flow_key    TEXT        NOT NULL DEFAULT '',
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    start_tick  BIGINT      NOT NULL,
    end_tick    BIGINT
)`, `CREATE TABLE IF NOT EXISTS ` + ClockTable + ` (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)`}
	if db.Dialector.Name() != "postgres" {
		ddl[0] = `CREATE TABLE IF NOT EXISTS ` + Table + ` (
    id          INTEGER  PRIMARY KEY AUTOINCREMENT,
    job_id      INTEGER  NOT NULL,
    attempt     INTEGER  NOT NULL,
    lease_id    TEXT     NOT NULL,
    pid         INTEGER  NOT NULL,
    flow_key    TEXT     NOT NULL DEFAULT '',
    started_at  DATETIME NOT NULL,
    finished_at DATETIME,
    start_tick  INTEGER  NOT NULL,
    end_tick    INTEGER
)`
	}
	ddl = append(ddl, `INSERT INTO `+ClockTable+` (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`)
	var err error
	for try := 0; try < 3; try++ {
		if err = execAll(ctx, db, ddl); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("chaos_record: create tables %s, %s: %w", Table, ClockTable, err)
}

// execAll runs statements in order, stopping at the first error.
func execAll(ctx context.Context, db *gorm.DB, statements []string) error {
	for _, q := range statements {
		if err := db.WithContext(ctx).Exec(q).Error; err != nil {
			return err
		}
	}
	return nil
}

// Call is one recorded handler call.
type Call struct {
	ID      int64 `gorm:"column:id"`
	JobID   int64 `gorm:"column:job_id"`
	Attempt int   `gorm:"column:attempt"`
	// LeaseID names the claim the call ran under: an attempt that lost its
	// worker does not count, so its next run has the same attempt number
	// under another claim.
	LeaseID string `gorm:"column:lease_id"`
	PID     int    `gorm:"column:pid"`
	// FlowKey is the payload's flowKey, "" for none.
	FlowKey string `gorm:"column:flow_key"`
	// StartedAt is when the handler started; FinishedAt when it finished
	// its sleep and recorded it, nil when it never did (interrupted: the
	// process died, or the context ended).
	StartedAt  time.Time  `gorm:"column:started_at"`
	FinishedAt *time.Time `gorm:"column:finished_at"`
	// StartTick and EndTick are the call's ticks of the shared counter
	// (Tick), taken after it started and before it returned; EndTick is nil
	// when FinishedAt is.
	StartTick int64  `gorm:"column:start_tick"`
	EndTick   *int64 `gorm:"column:end_tick"`
}

// Calls returns every recorded call, by id.
func Calls(ctx context.Context, db *gorm.DB) ([]Call, error) {
	var out []Call
	err := db.WithContext(ctx).Raw("SELECT id, job_id, attempt, lease_id, pid, flow_key, started_at, finished_at, start_tick, end_tick FROM " + Table + " ORDER BY id").Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("chaos_record: read %s: %w", Table, err)
	}
	return out, nil
}
