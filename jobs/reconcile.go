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
	// Recovered counts processing jobs whose lease had expired, returned to
	// pending (or failed, when out of attempts).
	Recovered int
	// Dropped counts Redis entries of finished, cancelled or missing jobs.
	Dropped int
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

// Run reaps expired leases, drops Redis entries of finished, cancelled or
// missing jobs, then enqueues every pending job that is in none of the
// queue's sets.
func (r *Reconciler) Run(ctx context.Context) (ReconcileResult, error) {
	const page = 500
	var res ReconcileResult
	n, err := r.Reap(ctx)
	res.Recovered = n
	if err != nil {
		return res, err
	}
	dropped, err := r.dropStale(ctx)
	res.Dropped = dropped
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

// Reap returns to the queue the processing jobs whose lease has expired:
// their worker died, stalled or lost its connection, since a live worker's
// heartbeat keeps renewing the lease. The lost attempt counts ("lease
// expired: worker lost"); a job out of attempts fails. The compare-and-set
// on the attempt number fences the old worker: if it comes back, it can no
// longer record anything for this job. Reap runs at the start of every
// drain and periodically inside serve.
func (r *Reconciler) Reap(ctx context.Context) (int, error) {
	now := r.clock.Now().UTC()
	var rows []models.Job
	if err := r.db.WithContext(ctx).Select("id", "priority", "attempts", "max_attempts", "started_at", "lease_id").
		Where("status = ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)", models.StatusProcessing, now).
		Order("id").Limit(1000).Find(&rows).Error; err != nil {
		return 0, fmt.Errorf("reap: list expired leases: %w: %w", ErrUnavailable, err)
	}
	reaped := 0
	for _, row := range rows {
		const reason = "lease expired: worker lost"
		updates := map[string]any{"status": models.StatusPending, "error": reason, "next_run_at": now, "lease_expires_at": nil, "lease_id": nil, "updated_at": now}
		failed := row.Attempts >= row.MaxAttempts
		if failed {
			updates = map[string]any{"status": models.StatusFailed, "error": reason, "completed_at": now, "lease_expires_at": nil, "lease_id": nil, "updated_at": now}
		}
		res := leased(r.db.WithContext(ctx), &row).
			Where("lease_expires_at IS NULL OR lease_expires_at < ?", now).
			Updates(updates)
		if res.Error != nil {
			return reaped, fmt.Errorf("reap job %d: %w: %w", row.ID, ErrUnavailable, res.Error)
		}
		if res.RowsAffected == 0 {
			continue // renewed or finished meanwhile
		}
		started := now
		if row.StartedAt != nil {
			started = *row.StartedAt
		}
		recordAttempt(ctx, r.db, r.log, attemptRecord{JobID: row.ID, Attempt: row.Attempts, StartedAt: started, FinishedAt: now, Outcome: AttemptLost, Error: reason})
		var err error
		if failed {
			err = r.queue.Ack(ctx, row.ID)
		} else {
			err = r.queue.Release(ctx, Item{ID: row.ID, Priority: row.Priority})
		}
		if err != nil {
			r.log.Warn("reaped job not re-enqueued; the reconciler will enqueue it", "job_id", row.ID, "err", err)
		}
		reaped++
		r.log.Warn("reaped a job whose worker was lost", "job_id", row.ID, "attempt", row.Attempts, "failed", failed)
	}
	return reaped, nil
}

// dropStale removes from Redis the ids whose row is finished, cancelled or
// missing, and processing entries whose row is no longer processing.
func (r *Reconciler) dropStale(ctx context.Context) (int, error) {
	members, err := r.queue.Members(ctx)
	if err != nil || len(members) == 0 {
		return 0, err
	}
	ids := make([]int64, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	status := map[int64]models.Status{}
	for start := 0; start < len(ids); start += 1000 {
		var rows []models.Job
		chunk := ids[start:min(start+1000, len(ids))]
		if err := r.db.WithContext(ctx).Select("id", "status").Where("id IN ?", chunk).Find(&rows).Error; err != nil {
			return 0, fmt.Errorf("reconcile: look up queued jobs: %w: %w", ErrUnavailable, err)
		}
		for _, row := range rows {
			status[row.ID] = row.Status
		}
	}
	var stale []int64
	for id, set := range members {
		st, ok := status[id]
		var err error
		switch {
		case !ok, st.Finished(), st == models.StatusScheduled:
			// Not runnable from Redis at all: out of every set.
			err = r.queue.Remove(ctx, id)
		case set == "processing" && st != models.StatusProcessing:
			// A lease entry left behind: the row is pending again.
			err = r.queue.Ack(ctx, id)
		default:
			continue
		}
		if err != nil {
			return len(stale), fmt.Errorf("reconcile: %w", err)
		}
		stale = append(stale, id)
	}
	if len(stale) > 0 {
		r.log.Info("dropped redis entries of finished, cancelled or missing jobs", "count", len(stale))
	}
	return len(stale), nil
}
