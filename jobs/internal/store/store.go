// Package store owns every statement the engine runs on the jobs,
// job_attempts and job_effects tables: creating, reading, claiming,
// running and finishing jobs, and recording their irreversible steps. A change of
// a running job's state is a Transition value, built by one of the
// constructors (Completed, Retry, Failed, Deferred, Snoozed, Released,
// Lost, Cancelled), and applied by Apply, which takes many at once: on Postgres
// one statement updates every job of the batch and writes their attempts
// (one round trip, one commit); on SQLite one fenced UPDATE each and one
// multi-row INSERT of the attempts, in one transaction.
//
// The fence is written once, in Apply: a transition of a running job
// applies only while the row is still processing with the attempt and the
// lease id that the worker claimed. A write that was already applied, or
// whose job moved on, changes nothing, so a batch is safe to retry.
//
// What counts as an attempt: only a real failure consumes max_attempts.
// A deferral (the handler asked to run later), a snooze, a release at
// shutdown and a lost lease give the attempt back (attempts - 1). A lost
// lease instead counts in lost_attempts, the attempts in a row whose worker
// was lost, which a real outcome (completed, retried, failed, deferred)
// resets to 0; a job lost too many times in a row fails.
package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/jobhook/jobhook/models"
)

// Kind names a transition.
type Kind string

// The transitions.
const (
	KindCompleted Kind = "completed"
	KindRetry     Kind = "retry"
	KindFailed    Kind = "failed"
	KindDeferred  Kind = "deferred"
	KindSnoozed   Kind = "snoozed"
	KindReleased  Kind = "released"
	KindLost      Kind = "lost"
	KindCancelled Kind = "cancelled"
	// KindUnstarted gives back a claimed job whose handler never started
	// (see Unstarted).
	KindUnstarted Kind = "unstarted"
)

// Transition is a change of one job's state, built by a constructor.
type Transition struct {
	kind   Kind
	at     time.Time
	result json.RawMessage
	err    string
	owner  *string
	// maxLost bounds the lost attempts in a row (Lost).
	maxLost int
}

// Kind returns which transition t is.
func (t Transition) Kind() Kind { return t.kind }

// At returns the time a retried or snoozed job runs again.
func (t Transition) At() time.Time { return t.at }

// Err returns the error text the transition stores.
func (t Transition) Err() string { return t.err }

// Completed ends the attempt and the job with result; the error and the
// checkpoint are cleared.
func Completed(result json.RawMessage) Transition {
	return Transition{kind: KindCompleted, result: result}
}

// Retry ends the attempt with err; the job is pending again at at.
func Retry(at time.Time, err string) Transition {
	return Transition{kind: KindRetry, at: at.UTC(), err: err}
}

// Failed ends the attempt and the job with err.
func Failed(err string) Transition { return Transition{kind: KindFailed, err: err} }

// Deferred ends the attempt without counting it, as the handler asked
// (RetryAfter): waiting is not failing. The job is pending again at at,
// with err as its error (the reason it waits), and its lost streak ends;
// the history records the attempt as deferred.
func Deferred(at time.Time, err string) Transition {
	return Transition{kind: KindDeferred, at: at.UTC(), err: err}
}

// Snoozed ends the attempt without counting it: the job is pending again
// at until. No attempt is recorded.
func Snoozed(until time.Time) Transition { return Transition{kind: KindSnoozed, at: until.UTC()} }

// Released gives the job back unfinished, due now; the attempt does not
// count.
func Released() Transition { return Transition{kind: KindReleased, err: "released at shutdown"} }

// Lost ends an attempt whose lease expired, with reason. The attempt does
// not count against max_attempts (attempts - 1) but in lost_attempts: the
// job is pending again now, or, when this loss makes maxLost in a row
// (maxLost below 1 is 1), failed with "worker lost repeatedly: N attempts
// in a row lost their lease". It applies only while the lease is still
// expired.
func Lost(reason string, maxLost int) Transition {
	return Transition{kind: KindLost, err: reason, maxLost: max(maxLost, 1)}
}

// lostRepeatedly is the start of the error of a job lost too many times
// in a row; the statements append the count.
const lostRepeatedly = "worker lost repeatedly: "

// lostRepeatedlyEnd ends that error.
const lostRepeatedlyEnd = " attempts in a row lost their lease"

// Unstarted gives back a claimed job whose handler never started (the
// drain had too little time left for its timeout): pending again, due as
// before, its attempt not counted, its error and lost streak kept, and no
// attempt recorded.
func Unstarted() Transition { return Transition{kind: KindUnstarted} }

// Cancelled cancels an unfinished job (pending, scheduled or running) and
// its unfinished descendants (see CancelTree). owner, when not nil, must
// be the job's user.
func Cancelled(owner *string) Transition { return Transition{kind: KindCancelled, owner: owner} }

// Fence is the claim a transition of a running job must still hold. A nil
// LeaseID matches any lease (rows claimed before lease ids existed).
// Cancelled transitions use only ID.
type Fence struct {
	ID      int64
	Attempt int
	LeaseID *string
}

// Update is one transition of one job.
type Update struct {
	Fence      Fence
	Transition Transition
	// StartedAt is when the attempt began, for its history; zero is
	// unknown.
	StartedAt time.Time
	// Now stamps the row (updated_at, completed_at, a due time).
	Now time.Time
}

// outcome is the attempt history's name for how the attempt ended; empty
// when the transition records no attempt.
func (u Update) outcome() string {
	switch u.Transition.kind {
	case KindCompleted:
		return "completed"
	case KindRetry:
		return "retried"
	case KindFailed:
		return "failed"
	case KindDeferred:
		return "deferred"
	case KindReleased:
		return "released"
	case KindLost:
		return "lost"
	}
	return ""
}

// Applied says what became of one Update: Applied is false when the job
// had moved on (nothing was written).
type Applied struct {
	Applied  bool
	Status   models.Status
	Priority int
	ParentID *int64
}

// Store runs the engine's statements on one database.
type Store struct {
	db       *gorm.DB
	postgres bool
}

// New returns a Store on db.
func New(db *gorm.DB) *Store {
	return &Store{db: db, postgres: db != nil && db.Dialector.Name() == "postgres"}
}

// MaxErrorLength caps the error text stored on a job and in its history.
const MaxErrorLength = 2000

// returned is the part of a row Apply reads back.
type returned struct {
	ID       int64
	Status   models.Status
	Priority int
	ParentID *int64
}

// Apply applies every update and records their attempts, atomically, and
// reports, in the same order, which were applied. The updates must name
// distinct jobs. On Postgres a batch of running jobs' transitions (up to
// pgChunk) is one statement; otherwise the statements run in one
// transaction.
func (s *Store) Apply(ctx context.Context, updates []Update) ([]Applied, error) {
	out := make([]Applied, len(updates))
	if len(updates) == 0 {
		return out, nil
	}
	var running, cancels []int
	for i, u := range updates {
		if u.Transition.kind == KindCancelled {
			cancels = append(cancels, i)
		} else {
			running = append(running, i)
		}
	}
	write := func(db *gorm.DB) error {
		rows, err := s.applyRunning(db, updates, running)
		if err != nil {
			return err
		}
		for _, i := range cancels {
			r, err := s.applyCancel(db, updates[i])
			if err != nil {
				return err
			}
			if r != nil {
				rows = append(rows, *r)
			}
		}
		byID := make(map[int64]returned, len(rows))
		for _, r := range rows {
			byID[r.ID] = r
		}
		var history []models.JobAttempt
		created := time.Now().UTC()
		for i, u := range updates {
			r, ok := byID[u.Fence.ID]
			if !ok {
				out[i] = Applied{}
				continue
			}
			out[i] = Applied{Applied: true, Status: r.Status, Priority: r.Priority, ParentID: r.ParentID}
			// On Postgres the batch statement wrote the attempts.
			if o := u.outcome(); o != "" && !s.postgres {
				history = append(history, attemptRow(u.Fence.ID, u.Fence.Attempt, u.StartedAt, u.Now, o, u.Transition.err, created))
			}
		}
		if len(history) > 0 {
			if err := db.Create(&history).Error; err != nil {
				return fmt.Errorf("record attempts: %w", err)
			}
		}
		return nil
	}
	db := s.db.WithContext(ctx)
	var err error
	if s.postgres && len(cancels) == 0 && len(running) <= pgChunk {
		err = write(db)
	} else {
		err = db.Transaction(write)
	}
	if err != nil {
		return nil, fmt.Errorf("apply %d job transitions: %w", len(updates), err)
	}
	return out, nil
}

// fence scopes a statement to the claim that holds a running job.
func fence(db *gorm.DB, f Fence) *gorm.DB {
	q := db.Where("id = ? AND status = ? AND attempts = ?", f.ID, models.StatusProcessing, f.Attempt)
	if f.LeaseID != nil {
		q = q.Where("lease_id = ?", *f.LeaseID)
	}
	return q
}

// applyRunning applies the transitions of running jobs: on Postgres one
// statement for all of them that also writes their attempts, elsewhere one
// fenced UPDATE each.
func (s *Store) applyRunning(tx *gorm.DB, updates []Update, idx []int) ([]returned, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	if s.postgres {
		return s.applyRunningPostgres(tx, updates, idx)
	}
	var all []returned
	for _, i := range idx {
		u := updates[i]
		var rows []models.Job
		q := fence(tx.Model(&rows), u.Fence).
			Clauses(clause.Returning{Columns: []clause.Column{{Name: "id"}, {Name: "status"}, {Name: "priority"}, {Name: "parent_id"}}})
		if u.Transition.kind == KindLost {
			q = q.Where("lease_expires_at IS NULL OR lease_expires_at < ?", u.Now.UTC())
		}
		if err := q.Updates(columns(u)).Error; err != nil {
			return nil, fmt.Errorf("job %d: %w", u.Fence.ID, err)
		}
		for _, r := range rows {
			all = append(all, returned{ID: r.ID, Status: r.Status, Priority: r.Priority, ParentID: r.ParentID})
		}
	}
	return all, nil
}

// columns is what one transition writes, for a single-row UPDATE.
func columns(u Update) map[string]any {
	now := u.Now.UTC()
	t := u.Transition
	c := map[string]any{"lease_expires_at": nil, "lease_id": nil, "updated_at": now}
	switch t.kind {
	case KindCompleted, KindRetry, KindFailed, KindDeferred:
		c["lost_attempts"] = 0 // a real outcome ends the lost streak
	}
	switch t.kind {
	case KindCompleted:
		c["status"], c["result"], c["error"], c["checkpoint"], c["completed_at"] = models.StatusCompleted, models.JSON(t.result), "", nil, now
	case KindRetry:
		c["status"], c["error"], c["next_run_at"] = models.StatusPending, t.err, t.at
	case KindFailed:
		c["status"], c["error"], c["completed_at"] = models.StatusFailed, t.err, now
	case KindDeferred:
		c["status"], c["attempts"], c["error"], c["next_run_at"] = models.StatusPending, gorm.Expr("attempts - 1"), t.err, t.at
	case KindSnoozed:
		c["status"], c["attempts"], c["next_run_at"] = models.StatusPending, gorm.Expr("attempts - 1"), t.at
	case KindReleased:
		c["status"], c["attempts"], c["next_run_at"] = models.StatusPending, gorm.Expr("attempts - 1"), now
	case KindUnstarted:
		c["status"], c["attempts"] = models.StatusPending, gorm.Expr("attempts - 1")
	case KindLost:
		// The statement reads the row as it was: lost_attempts + 1 counts
		// this loss.
		final := "lost_attempts + 1 >= ?"
		c["status"] = gorm.Expr("CASE WHEN "+final+" THEN ? ELSE ? END", t.maxLost, models.StatusFailed, models.StatusPending)
		c["attempts"] = gorm.Expr("attempts - 1")
		c["lost_attempts"] = gorm.Expr("lost_attempts + 1")
		c["error"] = gorm.Expr("CASE WHEN "+final+" THEN ? || (lost_attempts + 1) || ? ELSE ? END", t.maxLost, lostRepeatedly, lostRepeatedlyEnd, t.err)
		c["completed_at"] = gorm.Expr("CASE WHEN "+final+" THEN ? ELSE completed_at END", t.maxLost, now)
		c["next_run_at"] = gorm.Expr("CASE WHEN "+final+" THEN next_run_at ELSE ? END", t.maxLost, now)
	}
	return c
}

// pgBatch is the Postgres batch write: every running job's transition as
// one row of a VALUES list, and one statement that updates every job and
// writes the attempts of the jobs it updated (a fenced-out job gets no
// attempt), so a batch is one round trip and one commit. Every SET reads
// the row as it was: for a lost job, j.lost_attempts + 1 counts this loss
// and max_lost is its bound.
const pgBatch = `WITH v(id, attempt, lease_id, kind, status, result, error, at, now, started, outcome, max_lost) AS (VALUES %s),
u AS (
  UPDATE jobs AS j SET
    status = CASE WHEN v.kind = 'lost' THEN (CASE WHEN j.lost_attempts + 1 >= v.max_lost THEN 'failed' ELSE 'pending' END) ELSE v.status END,
    attempts = CASE WHEN v.kind IN ('snoozed', 'released', 'deferred', 'lost', 'unstarted') THEN j.attempts - 1 ELSE j.attempts END,
    lost_attempts = CASE WHEN v.kind = 'lost' THEN j.lost_attempts + 1 WHEN v.kind IN ('snoozed', 'released', 'unstarted') THEN j.lost_attempts ELSE 0 END,
    result = CASE WHEN v.kind = 'completed' THEN v.result ELSE j.result END,
    error = CASE WHEN v.kind IN ('snoozed', 'released', 'unstarted') THEN j.error
      WHEN v.kind = 'lost' AND j.lost_attempts + 1 >= v.max_lost THEN '` + lostRepeatedly + `' || (j.lost_attempts + 1) || '` + lostRepeatedlyEnd + `'
      ELSE v.error END,
    checkpoint = CASE WHEN v.kind = 'completed' THEN NULL ELSE j.checkpoint END,
    completed_at = CASE WHEN v.kind IN ('completed', 'failed') OR (v.kind = 'lost' AND j.lost_attempts + 1 >= v.max_lost) THEN v.now ELSE j.completed_at END,
    next_run_at = CASE WHEN v.kind IN ('retry', 'snoozed', 'deferred') THEN v.at
      WHEN v.kind = 'released' OR (v.kind = 'lost' AND j.lost_attempts + 1 < v.max_lost) THEN v.now
      ELSE j.next_run_at END,
    lease_expires_at = NULL,
    lease_id = NULL,
    updated_at = v.now
  FROM v
  WHERE j.id = v.id AND j.status = 'processing' AND j.attempts = v.attempt
    AND (v.lease_id IS NULL OR j.lease_id = v.lease_id)
    AND (v.kind <> 'lost' OR j.lease_expires_at IS NULL OR j.lease_expires_at < v.now)
  RETURNING j.id, j.status, j.priority, j.parent_id, v.attempt, v.error, v.now, v.started, v.outcome
),
h AS (
  INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, error, created_at)
  SELECT u.id, u.attempt, u.started, u.now, u.outcome, u.error, CAST(? AS timestamptz) FROM u WHERE u.outcome <> ''
)
SELECT u.id, u.status, u.priority, u.parent_id FROM u`

const pgRow = "(CAST(? AS bigint), CAST(? AS integer), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS jsonb), CAST(? AS text), CAST(? AS timestamptz), CAST(? AS timestamptz), CAST(? AS timestamptz), CAST(? AS text), CAST(? AS integer))"

// pgRowArgs is the number of parameters of one pgRow.
const pgRowArgs = 12

// pgChunk bounds the rows of one statement (12 parameters each, far below
// Postgres's 65,535).
const pgChunk = 1000

// applyRunningPostgres applies the transitions of running jobs and writes
// their attempts, one statement per pgChunk of them.
func (s *Store) applyRunningPostgres(db *gorm.DB, updates []Update, idx []int) ([]returned, error) {
	var all []returned
	created := time.Now().UTC()
	for start := 0; start < len(idx); start += pgChunk {
		chunk := idx[start:min(start+pgChunk, len(idx))]
		values := make([]string, len(chunk))
		args := make([]any, 0, pgRowArgs*len(chunk)+1)
		for n, i := range chunk {
			u := updates[i]
			t := u.Transition
			values[n] = pgRow
			var status, at, started any
			switch t.kind {
			case KindCompleted:
				status = models.StatusCompleted
			case KindFailed:
				status = models.StatusFailed
			case KindRetry, KindDeferred, KindSnoozed, KindReleased, KindUnstarted:
				status = models.StatusPending
			}
			if !t.at.IsZero() {
				at = t.at
			}
			if !u.StartedAt.IsZero() {
				started = u.StartedAt.UTC()
			}
			var result any
			if t.kind == KindCompleted {
				result = models.JSON(t.result)
			}
			now := u.Now.UTC()
			if u.Now.IsZero() {
				now = created
			}
			args = append(args, u.Fence.ID, u.Fence.Attempt, u.Fence.LeaseID, string(t.kind), status, result, Truncate(t.err), at, now, started, u.outcome(), t.maxLost)
		}
		args = append(args, created)
		// Rows, not Scan: Scan renders the whole statement with its values
		// for the logger even when nothing is logged.
		q := fmt.Sprintf(pgBatch, strings.Join(values, ", "))
		rows, err := db.Raw(q, args...).Rows()
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var r returned
			if err := rows.Scan(&r.ID, &r.Status, &r.Priority, &r.ParentID); err != nil {
				_ = rows.Close()
				return nil, err
			}
			all = append(all, r)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return all, nil
}

// applyCancel cancels one unfinished job and its unfinished descendants
// (see CancelTree) and reports the job itself; CancelTree also reports the
// descendants.
func (s *Store) applyCancel(tx *gorm.DB, u Update) (*returned, error) {
	done, err := s.cancelTree(tx, u.Transition.owner, u.Fence.ID, u.Now)
	if err != nil {
		return nil, fmt.Errorf("cancel job %d: %w", u.Fence.ID, err)
	}
	if len(done) == 0 {
		return nil, nil
	}
	r := done[0]
	return &returned{ID: r.ID, Status: models.StatusCancelled, Priority: r.Priority, ParentID: r.ParentID}, nil
}

// Attempt is one finished attempt for InsertAttempts.
type Attempt struct {
	JobID      int64
	Attempt    int
	StartedAt  time.Time
	FinishedAt time.Time
	Outcome    string
	Error      string
}

// attemptRow builds a history row: a zero start is unknown (NULL), a zero
// end is now, the error is truncated like the job's.
func attemptRow(jobID int64, attempt int, started, finished time.Time, outcome, errText string, created time.Time) models.JobAttempt {
	row := models.JobAttempt{JobID: jobID, Attempt: attempt, FinishedAt: finished.UTC(), Outcome: outcome, Error: Truncate(errText), CreatedAt: created}
	if !started.IsZero() {
		at := started.UTC()
		row.StartedAt = &at
	}
	if finished.IsZero() {
		row.FinishedAt = created
	}
	return row
}

// InsertAttempts writes finished attempts to the history in one
// statement.
func (s *Store) InsertAttempts(ctx context.Context, attempts ...Attempt) error {
	if len(attempts) == 0 {
		return nil
	}
	created := time.Now().UTC()
	rows := make([]models.JobAttempt, len(attempts))
	for i, a := range attempts {
		rows[i] = attemptRow(a.JobID, a.Attempt, a.StartedAt, a.FinishedAt, a.Outcome, a.Error, created)
	}
	if err := s.db.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("record %d attempts: %w", len(rows), err)
	}
	return nil
}
