package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// DefaultReconcileInterval is how often drains reconcile at most.
const DefaultReconcileInterval = time.Minute

// reconcileCallTimeout bounds each step of a reconcile pass (one page of
// pending rows read, looked up in Redis and enqueued; the stale-entry
// sweep; the turn's lock), so a pass over a hung backend fails instead of
// waiting; a pass cut short is redone by the next one.
const reconcileCallTimeout = 10 * time.Second

// reconciler makes Redis agree with the database, the source of truth: every
// pending job the queue has lost (an enqueue that failed after the insert,
// an in-process Redis that restarted empty, a flushed Redis) is enqueued
// again — now if it is due, at its next run time if not.
type reconciler struct {
	store    *store.Store
	queue    *redisQueue
	clock    Clock
	log      *slog.Logger
	interval time.Duration
	// maxLost is how many attempts in a row may be lost before the job
	// fails.
	maxLost int
	fin     *finisher
	// keepCompleted and keepFailed are how long finished jobs are kept
	// (completed; failed and cancelled); negative keeps them forever.
	keepCompleted, keepFailed time.Duration
	// artifacts deletes the files no remaining job names (nil: none);
	// the other fields bound one sweep (see sweepArtifacts).
	artifacts                         Artifacts
	artifactScanJobs, artifactRemoves int
}

// reconcilerConfig builds a reconciler.
type reconcilerConfig struct {
	DB    *gorm.DB
	Queue *redisQueue
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Interval is the least time between two RunIfDue passes across every
	// process sharing the Redis. Defaults to DefaultReconcileInterval.
	Interval time.Duration
	// MaxLost is how many attempts of a job in a row may lose their lease
	// before the job fails. Defaults to DefaultMaxLostAttempts.
	MaxLost int
	// Notify, when set, is called when a reaped child's end makes its
	// waiting parent due, to start a worker call (a debounced trigger).
	Notify func(ctx context.Context)
	// RetentionCompleted and RetentionFailed: see Config.
	RetentionCompleted, RetentionFailed time.Duration
	// Artifacts: see Config.
	Artifacts Artifacts
}

// newReconciler returns a reconciler.
func newReconciler(cfg reconcilerConfig) *reconciler {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultReconcileInterval
	}
	if cfg.MaxLost <= 0 {
		cfg.MaxLost = DefaultMaxLostAttempts
	}
	if cfg.RetentionCompleted == 0 {
		cfg.RetentionCompleted = DefaultRetentionCompleted
	}
	if cfg.RetentionFailed == 0 {
		cfg.RetentionFailed = DefaultRetentionFailed
	}
	r := &reconciler{store: store.New(cfg.DB), queue: cfg.Queue, clock: cfg.Clock, log: cfg.Logger.With("component", "reconciler"), interval: cfg.Interval, maxLost: cfg.MaxLost,
		keepCompleted: cfg.RetentionCompleted, keepFailed: cfg.RetentionFailed,
		artifacts: cfg.Artifacts, artifactScanJobs: artifactScanJobs, artifactRemoves: artifactRemoves}
	r.fin = &finisher{store: r.store, queue: cfg.Queue, clock: cfg.Clock, log: r.log, notify: cfg.Notify, metrics: noMetrics{}}
	return r
}

// reconcileResult says what a pass did.
type reconcileResult struct {
	// Checked counts pending jobs looked at.
	Checked int
	// Enqueued counts jobs found missing from Redis and enqueued again.
	Enqueued int
	// Recovered counts processing jobs whose lease had expired, returned to
	// pending (or failed, when lost too many times in a row).
	Recovered int
	// Dropped counts Redis entries of finished, cancelled or missing jobs.
	Dropped int
	// Unparked counts jobs parked on a flow key with a free slot, let run.
	Unparked int
	// Deleted counts finished top-level jobs deleted by retention (their
	// children went with them).
	Deleted int64
	// Artifacts is what the artifact sweep did.
	Artifacts artifactSweep
}

// RunIfDue runs a pass unless one ran, in any process, within the interval.
func (r *reconciler) RunIfDue(ctx context.Context) (reconcileResult, error) {
	lctx, cancel := context.WithTimeout(ctx, queueCallTimeout)
	defer cancel()
	ok, err := r.queue.rdb.SetNX(lctx, r.queue.Key("reconcile:lock"), r.clock.Now().UnixMilli(), r.interval).Result()
	if err != nil {
		return reconcileResult{}, fmt.Errorf("reconcile: take turn: %w", err)
	}
	if !ok {
		return reconcileResult{}, nil
	}
	return r.Run(ctx)
}

// Run reaps expired leases, drops Redis entries of finished, cancelled or
// missing jobs, lets run the jobs parked on a flow key with a free slot,
// then enqueues every pending job that is in none of the queue's sets.
func (r *reconciler) Run(ctx context.Context) (reconcileResult, error) {
	const page = 500
	var res reconcileResult
	rctx, cancel := context.WithTimeout(ctx, reapTimeout)
	n, err := r.Reap(rctx)
	cancel()
	res.Recovered = n
	if err != nil {
		return res, err
	}
	dctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	dropped, err := r.dropStale(dctx)
	cancel()
	res.Dropped = dropped
	if err != nil {
		return res, err
	}
	uctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	res.Unparked, err = r.queue.Unstick(uctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("reconcile: %w: %w", ErrUnavailable, err)
	}
	if res.Unparked > 0 {
		r.log.Warn("jobs parked on a flow key with a free slot were let run", "count", res.Unparked)
	}
	tctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	res.Deleted, err = r.retain(tctx)
	cancel()
	if err != nil {
		return res, err
	}
	actx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	res.Artifacts, err = r.sweepArtifacts(actx)
	cancel()
	if err != nil {
		// The files wait for the next pass; the queue's repair does not.
		r.log.Warn("artifact sweep failed; the next pass retries", "err", err)
	}
	var after int64
	now := r.clock.Now()
	for {
		// Each page gets its own deadline (the timers are few: one per
		// 500 pending jobs).
		ctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
		defer cancel()
		rows, err := r.store.PendingPage(ctx, after, page)
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
		// A job may have been claimed and finished between the read of
		// its row and the look into Redis (a drain runs beside the pass):
		// only the rows still pending are enqueued.
		if len(missing) > 0 {
			still, err := r.store.Lookup(ctx, missing)
			if err != nil {
				return res, fmt.Errorf("reconcile: %w: %w", ErrUnavailable, err)
			}
			missing = missing[:0]
			for _, row := range still {
				if row.Status == models.StatusPending {
					missing = append(missing, row.ID)
				}
			}
			slices.Sort(missing)
		}
		var due []queueItem
		for _, id := range missing {
			row := byID[id]
			it := itemOf(&row)
			if row.NextRunAt.After(now) {
				if err := r.queue.EnqueueAt(ctx, row.NextRunAt, it); err != nil {
					return res, fmt.Errorf("reconcile: %w", err)
				}
				r.fin.wakeAt(ctx, row.NextRunAt)
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
// heartbeat keeps renewing the lease. The lost attempt is kept in the
// job's history ("lease expired: worker lost") but does not count against
// maxAttempts: it counts in lostAttempts instead, and a job whose
// MaxLostAttempts-th attempt in a row is lost fails ("worker lost
// repeatedly"). A job reaped back to pending goes to the tail of its
// priority (see the finisher). The fence on the attempt number and the
// lease id stops the old worker: if it comes back, it can no longer record
// anything for this job. Reap runs at the start of every drain and
// periodically inside serve.
func (r *reconciler) Reap(ctx context.Context) (int, error) {
	const reason = "lease expired: worker lost"
	now := r.clock.Now().UTC()
	rows, err := r.fin.store.Expired(ctx, now, 1000)
	if err != nil {
		return 0, fmt.Errorf("reap: %w: %w", ErrUnavailable, err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	items := make([]finishing, len(rows))
	for i := range rows {
		started := now
		if rows[i].StartedAt != nil {
			started = *rows[i].StartedAt
		}
		items[i] = finishing{update: store.Update{Fence: fenceOf(&rows[i]), Transition: store.Lost(reason, r.maxLost), StartedAt: started, Now: now}, typ: rows[i].Type}
	}
	applied, err := r.fin.apply(ctx, items)
	if err != nil {
		return 0, fmt.Errorf("reap: %w: %w", ErrUnavailable, err)
	}
	reaped := 0
	for i, a := range applied {
		if !a.Applied {
			continue // renewed or finished meanwhile
		}
		reaped++
		r.log.Warn("reaped a job whose worker was lost", "job_id", rows[i].ID, "attempt", rows[i].Attempts, "failed", a.Status == models.StatusFailed)
	}
	return reaped, nil
}

// The reaper's waits: it wakes reapSlack after the earliest lease of a
// running job ends, but never sooner than reapMinWait after its last pass,
// and at least every half lease.
const (
	reapSlack   = 100 * time.Millisecond
	reapMinWait = 250 * time.Millisecond
)

// nextReap is how long the reaper loop waits before its next pass: until
// reapSlack after the earliest lease of a running job ends, at least
// reapMinWait, at most half a lease.
func (r *reconciler) nextReap(ctx context.Context, lease time.Duration) time.Duration {
	wait := lease / 2
	ectx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	earliest, err := r.store.EarliestLease(ectx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reaper: reading the earliest lease failed", "err", err)
		}
		return wait
	}
	if earliest != nil {
		wait = min(wait, earliest.Sub(r.clock.Now())+reapSlack)
	}
	return max(wait, reapMinWait)
}

// dropStale removes from Redis the ids whose row is finished, cancelled or
// missing, and processing entries whose row is pending and whose lease has
// run out.
func (r *reconciler) dropStale(ctx context.Context) (int, error) {
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
		chunk := ids[start:min(start+1000, len(ids))]
		rows, err := r.store.Lookup(ctx, chunk)
		if err != nil {
			return 0, fmt.Errorf("reconcile: look up queued jobs: %w: %w", ErrUnavailable, err)
		}
		for _, row := range rows {
			status[row.ID] = row.Status
		}
	}
	dropped := 0
	var leftBehind []int64
	for id, set := range members {
		st, ok := status[id]
		switch {
		case !ok, st.Finished(), st == models.StatusScheduled:
			// Not runnable from Redis at all: out of every set.
			if err := r.queue.Remove(ctx, id); err != nil {
				return dropped, fmt.Errorf("reconcile: %w", err)
			}
			dropped++
		case set == "processing" && st != models.StatusProcessing:
			// A lease entry whose row is pending: left behind by a claim
			// that never reached the row, or a claim still in flight.
			leftBehind = append(leftBehind, id)
		}
	}
	// Only the entries whose lease has run out were left behind; the
	// others' claims may still land (a drain runs beside the pass).
	n, err := r.queue.AckExpired(ctx, leftBehind...)
	dropped += n
	if err != nil {
		return dropped, fmt.Errorf("reconcile: %w", err)
	}
	if dropped > 0 {
		r.log.Info("dropped redis entries of finished, cancelled or missing jobs", "count", dropped)
	}
	return dropped, nil
}

// Retention defaults (Config.RetentionCompleted, Config.RetentionFailed).
const (
	DefaultRetentionCompleted = 7 * 24 * time.Hour
	DefaultRetentionFailed    = 30 * 24 * time.Hour
	// retentionBatch bounds the top-level jobs one statement deletes: a
	// pass (at most one a minute) deletes up to this many completed and
	// as many failed or cancelled ones, so each lock is short.
	retentionBatch = 500
)

// retain deletes one batch of completed jobs older than keepCompleted and
// one of failed or cancelled jobs older than keepFailed (each top-level
// job with its children, attempts and effects), and returns how many
// top-level jobs it deleted.
func (r *reconciler) retain(ctx context.Context) (int64, error) {
	now := r.clock.Now()
	var total int64
	for _, pass := range []struct {
		keep     time.Duration
		statuses []models.Status
	}{
		{r.keepCompleted, []models.Status{models.StatusCompleted}},
		{r.keepFailed, []models.Status{models.StatusFailed, models.StatusCancelled}},
	} {
		if pass.keep < 0 {
			continue
		}
		n, err := r.store.DeleteFinished(ctx, pass.statuses, now.Add(-pass.keep), retentionBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("reconcile: retention: %w: %w", ErrUnavailable, err)
		}
	}
	if total > 0 {
		r.log.Info("finished jobs deleted by retention", "count", total)
	}
	return total, nil
}
