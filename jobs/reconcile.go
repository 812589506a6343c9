package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/models"
)

// DefaultReconcileInterval is how often drains reconcile at most.
const DefaultReconcileInterval = time.Minute

// Reconciler makes Redis agree with the database, the source of truth: every
// pending job the queue has lost (an enqueue that failed after the insert,
// an in-process Redis that restarted empty, a flushed Redis) is enqueued
// again — now if it is due, at its next run time if not.
type Reconciler struct {
	db       *gorm.DB
	queue    *Queue
	clock    Clock
	log      *slog.Logger
	interval time.Duration
}

// ReconcilerConfig builds a Reconciler.
type ReconcilerConfig struct {
	DB    *gorm.DB
	Queue *Queue
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Interval is the least time between two RunIfDue passes across every
	// process sharing the Redis. Defaults to DefaultReconcileInterval.
	Interval time.Duration
}

// NewReconciler returns a Reconciler.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReconcileInterval
	}
	return &Reconciler{db: cfg.DB, queue: cfg.Queue, clock: cfg.Clock, log: cfg.Logger.With("component", "reconciler"), interval: cfg.Interval}
}

// ReconcileResult says what a pass did.
type ReconcileResult struct {
	// Checked counts pending jobs looked at.
	Checked int
	// Enqueued counts jobs found missing from Redis and enqueued again.
	Enqueued int
	// Recovered counts processing jobs whose lease was gone or expired,
	// returned to pending (or failed, when out of attempts).
	Recovered int
}

// RunIfDue runs a pass unless one ran, in any process, within the interval.
func (r *Reconciler) RunIfDue(ctx context.Context) (ReconcileResult, error) {
	ok, err := r.queue.rdb.SetNX(ctx, r.queue.Key("reconcile:lock"), r.clock.Now().UnixMilli(), r.interval).Result()
	if err != nil {
		return ReconcileResult{}, fmt.Errorf("reconcile: take turn: %w", err)
	}
	if !ok {
		return ReconcileResult{}, nil
	}
	return r.Run(ctx)
}

// Run recovers processing jobs whose lease is gone, then enqueues every
// pending job that is in none of the queue's sets.
func (r *Reconciler) Run(ctx context.Context) (ReconcileResult, error) {
	const page = 500
	var res ReconcileResult
	n, err := r.recoverLost(ctx)
	res.Recovered = n
	if err != nil {
		return res, err
	}
	var after int64
	now := r.clock.Now()
	for {
		var rows []models.Job
		err := r.db.WithContext(ctx).Select("id", "priority", "next_run_at").
			Where("status = ? AND id > ?", models.StatusPending, after).
			Order("id").Limit(page).Find(&rows).Error
		if err != nil {
			return res, fmt.Errorf("reconcile: list pending jobs: %w: %w", ErrUnavailable, err)
		}
		if len(rows) == 0 {
			break
		}
		after = rows[len(rows)-1].ID
		res.Checked += len(rows)
		ids := make([]int64, len(rows))
		byID := make(map[int64]models.Job, len(rows))
		for i, row := range rows {
			ids[i] = row.ID
			byID[row.ID] = row
		}
		missing, err := r.queue.Missing(ctx, ids)
		if err != nil {
			return res, fmt.Errorf("reconcile: %w", err)
		}
		var due []Item
		for _, id := range missing {
			row := byID[id]
			it := Item{ID: id, Priority: row.Priority}
			if row.NextRunAt.After(now) {
				if err := r.queue.EnqueueAt(ctx, row.NextRunAt, it); err != nil {
					return res, fmt.Errorf("reconcile: %w", err)
				}
			} else {
				due = append(due, it)
			}
		}
		if err := r.queue.Enqueue(ctx, due...); err != nil {
			return res, fmt.Errorf("reconcile: %w", err)
		}
		res.Enqueued += len(missing)
		if len(rows) < page {
			break
		}
	}
	if res.Enqueued > 0 {
		r.log.Info("re-enqueued pending jobs missing from redis", "count", res.Enqueued, "checked", res.Checked)
	}
	return res, nil
}

// recoverLost returns to pending the processing jobs whose lease in Redis
// has expired or is missing (the worker died, or Redis lost the entry),
// counting the attempt; a job out of attempts fails. The compare-and-set on
// the attempt number means a worker that comes back late cannot record
// over the newer attempt.
func (r *Reconciler) recoverLost(ctx context.Context) (int, error) {
	var rows []models.Job
	if err := r.db.WithContext(ctx).Select("id", "priority", "attempts", "max_attempts").
		Where("status = ?", models.StatusProcessing).Order("id").Limit(1000).Find(&rows).Error; err != nil {
		return 0, fmt.Errorf("reconcile: list processing jobs: %w: %w", ErrUnavailable, err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	ids := make([]int64, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
	}
	leases, err := r.queue.Leases(ctx, ids)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	now := r.clock.Now().UTC()
	recovered := 0
	for _, row := range rows {
		if deadline, ok := leases[row.ID]; ok && deadline.After(now) {
			continue
		}
		const reason = "lease expired: worker lost"
		updates := map[string]any{"status": models.StatusPending, "error": reason, "next_run_at": now, "updated_at": now}
		if row.Attempts >= row.MaxAttempts {
			updates = map[string]any{"status": models.StatusFailed, "error": reason, "completed_at": now, "updated_at": now}
		}
		res := r.db.WithContext(ctx).Model(&models.Job{}).
			Where("id = ? AND status = ? AND attempts = ?", row.ID, models.StatusProcessing, row.Attempts).
			Updates(updates)
		if res.Error != nil {
			return recovered, fmt.Errorf("reconcile: recover job %d: %w: %w", row.ID, ErrUnavailable, res.Error)
		}
		if res.RowsAffected == 0 {
			continue // it finished meanwhile
		}
		it := Item{ID: row.ID, Priority: row.Priority}
		if updates["status"] == models.StatusPending {
			err = r.queue.Release(ctx, it)
		} else {
			err = r.queue.Ack(ctx, row.ID)
		}
		if err != nil {
			return recovered, fmt.Errorf("reconcile: %w", err)
		}
		recovered++
		r.log.Warn("recovered a job whose worker was lost", "job_id", row.ID, "attempt", row.Attempts)
	}
	return recovered, nil
}
