package jobs

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// TestCompleterRetriesATransientWriteFailure: the first writes of the
// drain's outcomes fail as a dead pooled connection does; the completer
// retries them, so every job that succeeded is recorded completed, once,
// and no handler runs twice (before the completer, such an outcome was
// dropped and the job ran again after its lease expired).
func TestCompleterRetriesATransientWriteFailure(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		reg := NewRegistry()
		var mu sync.Mutex
		runs := map[int64]int{}
		reg.MustRegister("once", HandlerFunc(func(_ context.Context, job *models.Job) (json.RawMessage, error) {
			mu.Lock()
			defer mu.Unlock()
			runs[job.ID]++
			return json.RawMessage(`{}`), nil
		}))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet})
		const n = 40
		for range n {
			_, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "once", MaxAttempts: 1})
			require.NoError(t, err)
		}
		w := newWorker(workerConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet, JobTimeout: 10 * time.Second, Concurrency: 8})
		var calls, failures int
		w.testCompleter = func(c *completer) {
			real := c.apply
			c.sleep = func(context.Context, time.Duration) error { return nil }
			c.apply = func(ctx context.Context, items []finishing) ([]store.Applied, error) {
				mu.Lock()
				calls++
				fail := calls <= 3
				if fail {
					failures++
				}
				mu.Unlock()
				if fail {
					return nil, fmt.Errorf("apply: %w", driver.ErrBadConn)
				}
				return real(ctx, items)
			}
		}
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, 3, failures)
		require.Equal(t, n, sum.Completed, "every outcome recorded despite the failed writes")
		require.Zero(t, sum.Skipped)
		var done int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("status = ?", models.StatusCompleted).Count(&done).Error)
		require.EqualValues(t, n, done)
		require.Len(t, runs, n)
		for id, r := range runs {
			require.Equal(t, 1, r, "job %d ran %d times", id, r)
		}
		var attempts int64
		require.NoError(t, b.DB.Gorm.Model(&models.JobAttempt{}).Count(&attempts).Error)
		require.EqualValues(t, n, attempts, "one attempt each, never twice")
	})
}

// TestCompleterGivesUpOnAPermanentWriteError: an error that retrying
// cannot cure is reported at once; the jobs stay processing for the
// reaper.
func TestCompleterGivesUpOnAPermanentWriteError(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		reg := NewRegistry()
		reg.MustRegister("once", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet})
		job, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "once"})
		require.NoError(t, err)
		w := newWorker(workerConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet, JobTimeout: 10 * time.Second})
		calls := 0
		w.testCompleter = func(c *completer) {
			c.apply = func(context.Context, []finishing) ([]store.Applied, error) {
				calls++
				return nil, errors.New("check constraint violated")
			}
		}
		sum, err := w.Drain(ctx, time.Minute)
		require.ErrorIs(t, err, ErrUnavailable, "an outcome not written is a backend failure")
		require.Equal(t, 1, calls, "not retried")
		require.Equal(t, 1, sum.Unrecorded)
		require.Zero(t, sum.Skipped)
		var row models.Job
		require.NoError(t, b.DB.Gorm.Take(&row, job.ID).Error)
		require.Equal(t, models.StatusProcessing, row.Status)
	})
}

func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("x: %w", driver.ErrBadConn), true},
		{context.DeadlineExceeded, true},
		{errors.New("failed to deallocate cached statement(s): conn closed"), true},
		{errors.New("database is locked (5) (SQLITE_BUSY)"), true},
		{errors.New("duplicate key value violates unique constraint"), false},
	} {
		require.Equal(t, tc.want, transient(tc.err), tc.err.Error())
	}
}

// TestSlotsFreeBeforeTheWriteLands: a job's slot frees once the completer
// has its outcome, not once the outcome is written, so with one slot the
// next jobs run while the first write is held back, and their outcomes
// then go into one write together instead of one write each.
func TestSlotsFreeBeforeTheWriteLands(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		quiet := slog.New(slog.DiscardHandler)
		q := newRedisQueue(b.Redis, b.Prefix, nil)
		reg := NewRegistry()
		var handled atomic.Int64
		reg.MustRegister("once", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			handled.Add(1)
			return nil, nil
		}))
		svc := newService(serviceConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet})
		const n = 10
		for range n {
			_, _, err := svc.Create(ctx, CreateRequest{UserID: "u1", Type: "once"})
			require.NoError(t, err)
		}
		w := newWorker(workerConfig{DB: b.DB.Gorm, Queue: q, Registry: reg, Logger: quiet, JobTimeout: 10 * time.Second, Concurrency: 1})
		var (
			mu      sync.Mutex
			batches []int
		)
		w.testCompleter = func(c *completer) {
			real := c.apply
			c.apply = func(ctx context.Context, items []finishing) ([]store.Applied, error) {
				mu.Lock()
				firstWrite := len(batches) == 0
				batches = append(batches, len(items))
				mu.Unlock()
				if firstWrite {
					// Hold the first write until every job has run.
					deadline := time.Now().Add(10 * time.Second)
					for handled.Load() < n {
						if time.Now().After(deadline) {
							return nil, fmt.Errorf("only %d of %d handlers ran while the first write waited", handled.Load(), n)
						}
						time.Sleep(time.Millisecond)
					}
				}
				return real(ctx, items)
			}
		}
		sum, err := w.Drain(ctx, time.Minute)
		require.NoError(t, err)
		require.Equal(t, n, sum.Completed)
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 1, batches[0])
		require.Less(t, len(batches), n, "the outcomes that waited were written together: %v", batches)
	})
}
