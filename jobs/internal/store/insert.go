package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/models"
)

// insertColumns are the columns Insert writes; the others take their
// defaults. The id comes first: Postgres batches carry ids allocated in
// advance, a single row takes the next one.
var insertColumns = []string{"id", "user_id", "type", "status", "priority", "payload", "max_attempts",
	"scheduled_for", "next_run_at", "created_at", "updated_at", "idempotency_key", "parent_id", "expires_at", "flow_keys", "trace_parent"}

// insertChunk bounds the rows of one INSERT (16 parameters each, below
// Postgres's 65,535).
const insertChunk = 1000

// insertArgs appends a row's values, without the id unless withID.
func insertArgs(args []any, r *models.Job, withID bool) []any {
	if withID {
		args = append(args, r.ID)
	}
	return append(args, r.UserID, r.Type, r.Status, r.Priority, r.Payload, r.MaxAttempts,
		r.ScheduledFor, r.NextRunAt, r.CreatedAt, r.UpdatedAt, r.IdempotencyKey, r.ParentID, r.ExpiresAt, r.FlowKeys, r.TraceParent)
}

// insertSQL is an INSERT of n rows that skips a row whose idempotency key
// is taken (the unique indexes of migration 00006) and returns the ids of
// the rows written.
func insertSQL(n int, withID bool) string {
	cols := insertColumns
	if !withID {
		cols = cols[1:]
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	values := strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	return "INSERT INTO jobs (" + strings.Join(cols, ", ") + ") VALUES " + values + " ON CONFLICT DO NOTHING RETURNING id"
}

// Insert writes new jobs and reports, in the same order, which were
// written; it sets the ID of each one written. A row whose idempotency key
// another job already holds (an earlier create, or a concurrent one that
// won the race) is skipped, not an error: read the holder back with
// ByIdempotencyKeys. The rows must not share a key.
//
// On Postgres a batch is written with COPY (see insertCopy), with ids
// taken from the sequence first and the keyed rows in key order, so that
// concurrent batches cannot deadlock on each other's keys. When the store
// does not sit on a pgx connection pool (a GORM transaction), it is one
// multi-row INSERT per 1,000 rows instead, several sharing one
// transaction. Elsewhere (SQLite) it is one INSERT per row in one
// transaction. Either way a batch is all or nothing.
func (s *Store) Insert(ctx context.Context, rows []*models.Job) ([]bool, error) {
	out := make([]bool, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	db := s.db.WithContext(ctx)
	var err error
	switch {
	case len(rows) == 1:
		err = insertOne(db, rows[0], &out[0])
	case s.postgres:
		if err = s.insertCopy(ctx, rows, out); errors.Is(err, errNoPgx) {
			err = s.insertPostgres(db, rows, out)
		}
	default:
		err = db.Transaction(func(tx *gorm.DB) error {
			for i, r := range rows {
				if err := insertOne(tx, r, &out[i]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		for _, r := range rows {
			r.ID = 0
		}
		return nil, fmt.Errorf("insert %d jobs: %w", len(rows), err)
	}
	return out, nil
}

// queryIDs runs a statement that returns one bigint column. It reads the
// rows itself: gorm's Scan formats every statement with its values for a
// trace, logged or not, which took half the CPU of a 1,000-row INSERT.
func queryIDs(db *gorm.DB, sql string, args ...any) ([]int64, error) {
	rows, err := db.Raw(sql, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// insertOne writes one row, taking the next id.
func insertOne(db *gorm.DB, r *models.Job, inserted *bool) error {
	ids, err := queryIDs(db, insertSQL(1, false), insertArgs(nil, r, false)...)
	if err != nil {
		return err
	}
	*inserted = len(ids) == 1
	if *inserted {
		r.ID = ids[0]
	}
	return nil
}

// insertPostgres writes a batch with multi-row INSERTs … ON CONFLICT DO
// NOTHING, ids taken from the sequence first so that each row's outcome
// is known by its id whatever order RETURNING uses.
func (s *Store) insertPostgres(db *gorm.DB, rows []*models.Job, out []bool) error {
	ids, err := queryIDs(db, "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, ?)", len(rows))
	if err != nil {
		return fmt.Errorf("allocate ids: %w", err)
	}
	if len(ids) != len(rows) {
		return fmt.Errorf("allocate ids: got %d for %d rows", len(ids), len(rows))
	}
	slices.Sort(ids) // in request order, so equal priorities run in that order
	for i, r := range rows {
		r.ID = ids[i]
	}
	// Rows with keys go in key order: two batches racing for the same
	// keys then wait on them in the same order, never on each other.
	ordered := slices.Clone(rows)
	slices.SortStableFunc(ordered, compareKeys)
	write := func(tx *gorm.DB) error {
		index := make(map[int64]int, len(rows))
		for i, r := range rows {
			index[r.ID] = i
		}
		for start := 0; start < len(ordered); start += insertChunk {
			chunk := ordered[start:min(start+insertChunk, len(ordered))]
			args := make([]any, 0, len(insertColumns)*len(chunk))
			for _, r := range chunk {
				args = insertArgs(args, r, true)
			}
			written, err := queryIDs(tx, insertSQL(len(chunk), true), args...)
			if err != nil {
				return err
			}
			for _, id := range written {
				out[index[id]] = true
			}
		}
		return nil
	}
	if len(rows) <= insertChunk {
		// One statement is atomic on its own.
		if err := write(db); err != nil {
			return err
		}
	} else if err := db.Transaction(write); err != nil {
		return err
	}
	for i, r := range rows {
		if !out[i] {
			r.ID = 0
		}
	}
	return nil
}

// compareKeys orders rows without a key first, then by key.
func compareKeys(a, b *models.Job) int {
	ka, oka := KeyOf(a)
	kb, okb := KeyOf(b)
	switch {
	case !oka || !okb:
		return cmp.Compare(boolInt(oka), boolInt(okb))
	case ka.ParentID != kb.ParentID:
		return cmp.Compare(ka.ParentID, kb.ParentID)
	case ka.UserID != kb.UserID:
		return strings.Compare(ka.UserID, kb.UserID)
	}
	return strings.Compare(ka.Key, kb.Key)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Key names a job by its idempotency key. A user's own keys (ParentID 0)
// and the keys of a parent's children are separate spaces (migration
// 00006), so no key a user chooses can ever match a child.
type Key struct {
	UserID string
	// ParentID is the parent of a child job; 0 for a user's own job.
	ParentID int64
	Key      string
}

// KeyOf returns the idempotency key of a job, and false when it has none.
func KeyOf(j *models.Job) (Key, bool) {
	if j.IdempotencyKey == nil {
		return Key{}, false
	}
	k := Key{UserID: j.UserID, Key: *j.IdempotencyKey}
	if j.ParentID != nil {
		k.ParentID = *j.ParentID
	}
	return k, true
}

// ByIdempotencyKeys returns the jobs that hold keys, in one statement per
// key space. A key no job holds is absent from the map.
func (s *Store) ByIdempotencyKeys(ctx context.Context, keys []Key) (map[Key]*models.Job, error) {
	out := make(map[Key]*models.Job, len(keys))
	var own, children [][]any
	for _, k := range keys {
		if k.ParentID == 0 {
			own = append(own, []any{k.UserID, k.Key})
		} else {
			children = append(children, []any{k.UserID, k.ParentID, k.Key})
		}
	}
	db := s.db.WithContext(ctx)
	for _, q := range []struct {
		where string
		vals  [][]any
	}{
		{"parent_id IS NULL AND (user_id, idempotency_key) IN ?", own},
		{"parent_id IS NOT NULL AND (user_id, parent_id, idempotency_key) IN ?", children},
	} {
		for start := 0; start < len(q.vals); start += insertChunk {
			var rows []models.Job
			if err := db.Where(q.where, q.vals[start:min(start+insertChunk, len(q.vals))]).Find(&rows).Error; err != nil {
				return nil, fmt.Errorf("find jobs by idempotency key: %w", err)
			}
			for i := range rows {
				if k, ok := KeyOf(&rows[i]); ok {
					out[k] = &rows[i]
				}
			}
		}
	}
	return out, nil
}
