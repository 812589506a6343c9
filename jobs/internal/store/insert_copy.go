package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/jobhook/jobhook/models"
)

// uniqueViolation is Postgres's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

// errNoPgx says the connection under GORM is not pgx's: the batch goes
// through the INSERT path instead.
var errNoPgx = errors.New("not a pgx connection")

// withPgx runs f on a *pgx.Conn of the store's *sql.DB, held for the
// whole call (a fresh connection of the pool, so never inside a
// transaction). It returns errNoPgx when the store sits on something else
// (a GORM transaction, another driver), and then f did not run.
func (s *Store) withPgx(ctx context.Context, f func(*pgx.Conn) error) error {
	run := func(conn *sql.Conn) error {
		return conn.Raw(func(dc any) error {
			c, ok := dc.(*stdlib.Conn)
			if !ok {
				return errNoPgx
			}
			return f(c.Conn())
		})
	}
	pool, ok := s.db.Statement.ConnPool.(*sql.DB)
	if !ok {
		return errNoPgx
	}
	conn, err := pool.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get a connection: %w", err)
	}
	defer func() { _ = conn.Close() }()
	return run(conn)
}

// allocateIDsSQL takes $1 ids from the jobs sequence, as one array (its
// name looked up once, not once per row).
//
// Its own transaction commits without waiting for the WAL flush
// (synchronous_commit off, for this statement alone): nextval writes WAL,
// so the commit would otherwise wait for a flush of its own, which cost
// more than the rest of the statement. Nothing is lost: the COPY that
// uses the ids commits later, and its flush covers this WAL; if it never
// commits, the ids were used by nothing.
const allocateIDsSQL = "SELECT array_agg(nextval(q.seq)) FROM (SELECT pg_get_serial_sequence('jobs', 'id')::regclass AS seq, " +
	"set_config('synchronous_commit', 'off', true)) q, generate_series(1, $1)"

// insertKeyedSQL writes the keyed rows of a batch from one array per
// column, in the arrays' order (key order), skipping a row whose key is
// taken, and returns the ids of the rows written. Its text never changes,
// so pgx prepares it once per connection.
var insertKeyedSQL = func() string {
	types := []string{"bigint", "text", "text", "text", "integer", "jsonb", "integer",
		"timestamptz", "timestamptz", "timestamptz", "timestamptz", "text", "bigint", "timestamptz", "text", "text"}
	params := make([]string, len(types))
	for i, t := range types {
		params[i] = "$" + strconv.Itoa(i+1) + "::" + t + "[]"
	}
	return "INSERT INTO jobs (" + strings.Join(insertColumns, ", ") + ") SELECT * FROM unnest(" +
		strings.Join(params, ", ") + ") ON CONFLICT DO NOTHING RETURNING id"
}()

// copyRow is a row's values in insertColumns order, for COPY.
func copyRow(r *models.Job) []any {
	var payload []byte
	if len(r.Payload) > 0 {
		payload = r.Payload
	}
	return []any{r.ID, r.UserID, r.Type, string(r.Status), r.Priority, payload, r.MaxAttempts,
		r.ScheduledFor, r.NextRunAt, r.CreatedAt, r.UpdatedAt, r.IdempotencyKey, r.ParentID, r.ExpiresAt, strings.Join(r.FlowKeys, " "), r.TraceParent}
}

// keyedArgs are the rows' values as one array per column, for
// insertKeyedSQL.
func keyedArgs(rows []*models.Job) []any {
	n := len(rows)
	var (
		ids, priorities, maxAttempts = make([]int64, n), make([]int32, n), make([]int32, n)
		users, types, statuses       = make([]string, n), make([]string, n), make([]string, n)
		payloads                     = make([][]byte, n)
		scheduled                    = make([]*time.Time, n)
		next, created, updated       = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		keys                         = make([]*string, n)
		parents                      = make([]*int64, n)
		expires                      = make([]*time.Time, n)
		flowKeys                     = make([]string, n)
		traceParents                 = make([]string, n)
	)
	for i, r := range rows {
		ids[i], users[i], types[i], statuses[i] = r.ID, r.UserID, r.Type, string(r.Status)
		priorities[i], maxAttempts[i] = int32(r.Priority), int32(r.MaxAttempts)
		if len(r.Payload) > 0 {
			payloads[i] = r.Payload
		}
		scheduled[i], next[i], created[i], updated[i] = r.ScheduledFor, r.NextRunAt, r.CreatedAt, r.UpdatedAt
		keys[i], parents[i], expires[i] = r.IdempotencyKey, r.ParentID, r.ExpiresAt
		flowKeys[i] = strings.Join(r.FlowKeys, " ")
		traceParents[i] = r.TraceParent
	}
	return []any{ids, users, types, statuses, priorities, payloads, maxAttempts,
		scheduled, next, created, updated, keys, parents, expires, flowKeys, traceParents}
}

// insertCopy writes a batch on Postgres through pgx. The ids come from
// the sequence first, in request order, so each row's outcome is known by
// its id. Then one COPY writes every row: those without a key first, then
// those with one in key order, so that two batches racing for the same
// keys wait on them in the same order, never on each other. One statement
// is atomic on its own.
//
// COPY cannot skip a row whose key is taken. The caller has already left
// out the keys it found taken, so a clash means a concurrent create took a
// key since: the COPY fails whole, and the batch is written again in one
// transaction, the rows without a key by COPY and the keyed ones by an
// INSERT … ON CONFLICT DO NOTHING in key order, which skips the taken
// ones. out[i] is set for each row written.
func (s *Store) insertCopy(ctx context.Context, rows []*models.Job, out []bool) error {
	return s.withPgx(ctx, func(conn *pgx.Conn) error {
		if err := allocateIDs(ctx, conn, rows); err != nil {
			return err
		}
		var plain, keyed []*models.Job
		for _, r := range rows {
			if r.IdempotencyKey == nil {
				plain = append(plain, r)
			} else {
				keyed = append(keyed, r)
			}
		}
		slices.SortFunc(keyed, compareKeys)
		err := copyJobs(ctx, conn, slices.Concat(plain, keyed))
		if err == nil {
			for i := range out {
				out[i] = true
			}
			return nil
		}
		var pgErr *pgconn.PgError
		if len(keyed) == 0 || !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
			return err
		}
		written, err := insertSkippingTaken(ctx, conn, plain, keyed)
		if err != nil {
			return err
		}
		for i, r := range rows {
			out[i] = r.IdempotencyKey == nil || written[r.ID]
			if !out[i] {
				r.ID = 0
			}
		}
		return nil
	})
}

// copyJobs writes rows with one COPY.
func copyJobs(ctx context.Context, q interface {
	CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error)
}, rows []*models.Job) error {
	n, err := q.CopyFrom(ctx, pgx.Identifier{"jobs"}, insertColumns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
		return copyRow(rows[i]), nil
	}))
	if err != nil {
		return fmt.Errorf("copy %d jobs: %w", len(rows), err)
	}
	if n != int64(len(rows)) {
		return fmt.Errorf("copy %d jobs: %d written", len(rows), n)
	}
	return nil
}

// insertSkippingTaken writes plain (rows without a key) and keyed (in key
// order) in one transaction, skipping the keyed rows whose key is taken,
// and returns the ids of the keyed rows written.
func insertSkippingTaken(ctx context.Context, conn *pgx.Conn, plain, keyed []*models.Job) (map[int64]bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if len(plain) > 0 {
		if err := copyJobs(ctx, tx, plain); err != nil {
			return nil, err
		}
	}
	res, err := tx.Query(ctx, insertKeyedSQL, keyedArgs(keyed)...)
	if err != nil {
		return nil, fmt.Errorf("insert %d keyed jobs: %w", len(keyed), err)
	}
	ids, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("insert %d keyed jobs: %w", len(keyed), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	written := make(map[int64]bool, len(ids))
	for _, id := range ids {
		written[id] = true
	}
	return written, nil
}

// allocateIDs sets each row's id from the sequence, in request order (so
// jobs of equal priority run in that order).
func allocateIDs(ctx context.Context, conn *pgx.Conn, rows []*models.Job) error {
	var ids []int64
	if err := conn.QueryRow(ctx, allocateIDsSQL, len(rows)).Scan(&ids); err != nil {
		return fmt.Errorf("allocate ids: %w", err)
	}
	if len(ids) != len(rows) {
		return fmt.Errorf("allocate ids: got %d for %d rows", len(ids), len(rows))
	}
	slices.Sort(ids)
	for i, r := range rows {
		r.ID = ids[i]
	}
	return nil
}
