package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/jobhook/jobhook/models"
)

// Worker defaults.
const (
	DefaultConcurrency = 8
	DefaultJobTimeout  = 5 * time.Minute
	// DefaultLeaseMargin is added to a job's timeout to make its lease.
	DefaultLeaseMargin = 30 * time.Second
	// maxErrorLength caps the error text stored on a job.
	maxErrorLength = 2000
)

// WorkerConfig builds a Worker.
type WorkerConfig struct {
	DB       *gorm.DB
	Queue    *Queue
	Registry *Registry
	// Clock defaults to the system clock. It stamps rows, leases and retry
	// times; the drain budget always runs on the real clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Concurrency is how many jobs one drain runs at once. Defaults to
	// DefaultConcurrency.
	Concurrency int
	// JobTimeout bounds a handler that does not set its own. Defaults to
	// DefaultJobTimeout.
	JobTimeout time.Duration
	// LeaseMargin is added to the job timeout for its lease. Defaults to
	// DefaultLeaseMargin.
	LeaseMargin time.Duration
	// Backoff spaces retries. Defaults to
	// ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, nil).
	Backoff BackoffFunc
	// Reconciler, when set, runs at the start of a drain at most once per
	// its interval.
	Reconciler *Reconciler
}

// Worker drains the queue: it claims jobs, runs their handlers and records
// the outcome. Many drains may run at once, in one process or many.
type Worker struct {
	cfg WorkerConfig
	log *slog.Logger
}

// NewWorker returns a Worker.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = DefaultJobTimeout
	}
	if cfg.LeaseMargin <= 0 {
		cfg.LeaseMargin = DefaultLeaseMargin
	}
	if cfg.Backoff == nil {
		cfg.Backoff = ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, nil)
	}
	return &Worker{cfg: cfg, log: cfg.Logger.With("component", "worker")}
}

// DrainSummary says what one drain did.
type DrainSummary struct {
	// Promoted counts scheduled and delayed jobs that became due.
	Promoted int `json:"promoted"`
	// Reenqueued counts pending jobs the reconciler found missing from Redis.
	Reenqueued int `json:"reenqueued"`
	// Claimed counts jobs this drain ran.
	Claimed   int `json:"claimed"`
	Completed int `json:"completed"`
	Retried   int `json:"retried"`
	Failed    int `json:"failed"`
	// Skipped counts claimed ids whose job was already finished, cancelled,
	// not yet due or running elsewhere.
	Skipped int `json:"skipped"`
	// Remaining is how many jobs were pending when the drain ended.
	Remaining  int64 `json:"remaining"`
	DurationMs int64 `json:"durationMs"`
}

// outcome is what running one job came to.
type outcome int

const (
	outcomeCompleted outcome = iota
	outcomeRetried
	outcomeFailed
	outcomeLost // the job's row had moved on: nothing recorded
)

// Drain promotes due jobs, then claims and runs jobs, up to Concurrency at a
// time, until the queue is empty or budget has passed. Jobs already running
// when the budget ends run to their end (each is bounded by its timeout).
// Cancelling ctx stops claiming and cancels the running handlers; their
// attempts are recorded as failures to retry.
func (w *Worker) Drain(ctx context.Context, budget time.Duration) (DrainSummary, error) {
	start := time.Now()
	deadline := start.Add(budget)
	var sum DrainSummary
	defer func() { sum.DurationMs = time.Since(start).Milliseconds() }()

	if w.cfg.Reconciler != nil {
		res, err := w.cfg.Reconciler.RunIfDue(ctx)
		if err != nil {
			w.log.Warn("reconcile failed", "err", err)
		}
		sum.Reenqueued = res.Enqueued
	}
	promoted, err := w.promoteScheduled(ctx)
	if err != nil {
		return sum, err
	}
	n, err := w.cfg.Queue.PromoteDue(ctx)
	if err != nil {
		return sum, err
	}
	sum.Promoted = promoted + n

	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		done     = make(chan struct{}, w.cfg.Concurrency)
		inflight int
	)
	record := func(o outcome) {
		mu.Lock()
		defer mu.Unlock()
		switch o {
		case outcomeCompleted:
			sum.Completed++
		case outcomeRetried:
			sum.Retried++
		case outcomeFailed:
			sum.Failed++
		case outcomeLost:
			sum.Skipped++
		}
	}
	var loopErr error
	for ctx.Err() == nil && time.Now().Before(deadline) {
		// Collect every job that has finished, so that one claim fills
		// every free slot (one script call and one UPDATE per batch).
		for collecting := true; collecting; {
			select {
			case <-done:
				inflight--
			default:
				collecting = false
			}
		}
		free := w.cfg.Concurrency - inflight
		if free == 0 {
			<-done
			inflight--
			continue
		}
		rows, skipped, err := w.claim(ctx, free)
		if err != nil {
			loopErr = err
			break
		}
		mu.Lock()
		sum.Skipped += skipped
		sum.Claimed += len(rows)
		mu.Unlock()
		if len(rows) == 0 {
			if skipped > 0 {
				continue
			}
			if inflight == 0 {
				break
			}
			// Wait for a running job: it may leave retries or free a slot.
			<-done
			inflight--
			continue
		}
		for i := range rows {
			inflight++
			wg.Add(1)
			go func(job models.Job) {
				defer wg.Done()
				record(w.run(ctx, &job))
				done <- struct{}{}
			}(rows[i])
		}
	}
	wg.Wait()
	if d, err := w.cfg.Queue.Depth(ctx); err == nil {
		sum.Remaining = d.Pending
	}
	if loopErr != nil {
		return sum, loopErr
	}
	return sum, nil
}

// promoteScheduled moves scheduled jobs whose time has come to pending and
// enqueues them.
func (w *Worker) promoteScheduled(ctx context.Context) (int, error) {
	now := w.cfg.Clock.Now().UTC()
	total := 0
	for {
		var rows []models.Job
		sub := w.cfg.DB.Model(&models.Job{}).Select("id").
			Where("status = ? AND next_run_at <= ?", models.StatusScheduled, now).Order("next_run_at").Limit(500)
		err := w.cfg.DB.WithContext(ctx).Model(&rows).
			Clauses(clause.Returning{Columns: []clause.Column{{Name: "id"}, {Name: "priority"}}}).
			Where("id IN (?) AND status = ?", sub, models.StatusScheduled).
			Updates(map[string]any{"status": models.StatusPending, "updated_at": now}).Error
		if err != nil {
			return total, fmt.Errorf("drain: promote scheduled jobs: %w: %w", ErrUnavailable, err)
		}
		if len(rows) == 0 {
			return total, nil
		}
		items := make([]Item, len(rows))
		for i, r := range rows {
			items[i] = Item{ID: r.ID, Priority: r.Priority}
		}
		if err := w.cfg.Queue.Enqueue(ctx, items...); err != nil {
			return total, fmt.Errorf("drain: enqueue promoted jobs: %w", err)
		}
		total += len(rows)
		w.log.Info("scheduled jobs are due", "count", len(rows))
	}
}

// claim takes up to n jobs from the queue and moves their rows from pending
// to processing in one statement. Ids whose rows are not pending and due
// are dropped from the queue (or, if pending but not due, delayed) and
// counted as skipped.
func (w *Worker) claim(ctx context.Context, n int) ([]models.Job, int, error) {
	lease := w.cfg.JobTimeout + w.cfg.LeaseMargin
	ids, err := w.cfg.Queue.Claim(ctx, n, lease)
	if err != nil || len(ids) == 0 {
		return nil, 0, err
	}
	now := w.cfg.Clock.Now().UTC()
	var rows []models.Job
	err = w.cfg.DB.WithContext(ctx).Model(&rows).Clauses(clause.Returning{}).
		Where("id IN ? AND status = ? AND next_run_at <= ?", ids, models.StatusPending, now).
		Updates(map[string]any{
			"status":     models.StatusProcessing,
			"attempts":   gorm.Expr("attempts + 1"),
			"started_at": now,
			"updated_at": now,
		}).Error
	if err != nil {
		// The rows are unchanged: hand the ids back so nothing is lost.
		items := make([]Item, len(ids))
		for i, id := range ids {
			items[i] = Item{ID: id}
		}
		if rerr := w.cfg.Queue.Release(ctx, items...); rerr != nil {
			w.log.Error("claimed jobs neither started nor released; the reconciler will restore them", "err", rerr)
		}
		return nil, 0, fmt.Errorf("drain: mark jobs processing: %w: %w", ErrUnavailable, err)
	}
	// Keep queue order: RETURNING gives no order guarantee.
	pos := make(map[int64]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	slices.SortFunc(rows, func(a, b models.Job) int { return pos[a.ID] - pos[b.ID] })
	if len(rows) == len(ids) {
		return rows, 0, nil
	}
	claimed := make(map[int64]bool, len(rows))
	for _, r := range rows {
		claimed[r.ID] = true
	}
	var others []int64
	for _, id := range ids {
		if !claimed[id] {
			others = append(others, id)
		}
	}
	if err := w.settleSkipped(ctx, others); err != nil {
		w.log.Warn("settling skipped jobs", "err", err)
	}
	return rows, len(others), nil
}

// settleSkipped handles claimed ids whose rows could not be moved to
// processing: a pending job that is not due yet goes back to delayed; any
// other (finished, cancelled, scheduled, running elsewhere, deleted) leaves
// the queue.
func (w *Worker) settleSkipped(ctx context.Context, ids []int64) error {
	var rows []models.Job
	if err := w.cfg.DB.WithContext(ctx).Select("id", "status", "priority", "next_run_at").
		Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return fmt.Errorf("look up skipped jobs: %w", err)
	}
	drop := slices.Clone(ids)
	for _, r := range rows {
		if r.Status == models.StatusPending {
			if err := w.cfg.Queue.EnqueueAt(ctx, r.NextRunAt, Item{ID: r.ID, Priority: r.Priority}); err != nil {
				return err
			}
			drop = slices.DeleteFunc(drop, func(id int64) bool { return id == r.ID })
		}
	}
	return w.cfg.Queue.Ack(ctx, drop...)
}

// run runs one claimed job and records its outcome.
func (w *Worker) run(ctx context.Context, job *models.Job) outcome {
	log := w.log.With("job_id", job.ID, "type", job.Type, "attempt", job.Attempts)
	h, ok := w.cfg.Registry.Lookup(job.Type)
	if !ok {
		return w.finish(ctx, log, job, nil, Permanent(fmt.Errorf("no handler registered for job type %q", job.Type)))
	}
	timeout := w.cfg.JobTimeout
	if th, ok := h.(TimeoutHandler); ok && th.Timeout() > 0 {
		timeout = th.Timeout()
	}
	jctx, cancel := context.WithTimeout(ctx, timeout)
	started := time.Now()
	result, err := w.safeHandle(jctx, log, h, job)
	cancel()
	if err == nil && len(result) > 0 && !json.Valid(result) {
		err = Permanent(errors.New("handler returned a result that is not valid JSON"))
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && jctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("job timed out after %s: %w", timeout, err)
	}
	log.Debug("handler returned", "duration", time.Since(started), "err", err)
	return w.finish(ctx, log, job, result, err)
}

func (w *Worker) safeHandle(ctx context.Context, log *slog.Logger, h Handler, job *models.Job) (res json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack goes to the log only; the job keeps a short message.
			log.Error("handler panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.Handle(ctx, job)
}

// finish records a job's outcome with a compare-and-set on its status and
// attempt, then updates the queue.
func (w *Worker) finish(ctx context.Context, log *slog.Logger, job *models.Job, result json.RawMessage, herr error) outcome {
	// Record even when the drain's context is cancelled: the outcome is known.
	wctx := context.WithoutCancel(ctx)
	now := w.cfg.Clock.Now().UTC()
	guard := w.cfg.DB.WithContext(wctx).Model(&models.Job{}).
		Where("id = ? AND status = ? AND attempts = ?", job.ID, models.StatusProcessing, job.Attempts)

	var (
		o       outcome
		updates map[string]any
		retryAt time.Time
	)
	switch {
	case herr == nil:
		o = outcomeCompleted
		updates = map[string]any{"status": models.StatusCompleted, "result": models.JSON(result), "error": "", "completed_at": now, "updated_at": now}
	case IsPermanent(herr) || job.Attempts >= job.MaxAttempts:
		o = outcomeFailed
		updates = map[string]any{"status": models.StatusFailed, "error": truncate(herr.Error()), "completed_at": now, "updated_at": now}
	default:
		o = outcomeRetried
		delay := w.cfg.Backoff(job.Attempts)
		if d, ok := retryAfterDelay(herr); ok && d > delay {
			delay = d
		}
		retryAt = now.Add(delay)
		updates = map[string]any{"status": models.StatusPending, "error": truncate(herr.Error()), "next_run_at": retryAt, "updated_at": now}
	}
	res := guard.Updates(updates)
	if res.Error != nil {
		// The row stays processing; its lease expiry brings it back.
		log.Error("could not record job outcome", "err", res.Error)
		return outcomeLost
	}
	if res.RowsAffected == 0 {
		log.Warn("job moved on while running (cancelled, or its lease was taken over); outcome dropped")
		return outcomeLost
	}
	var qerr error
	switch o {
	case outcomeRetried:
		qerr = w.cfg.Queue.EnqueueAt(wctx, retryAt, Item{ID: job.ID, Priority: job.Priority})
		log.Info("job will be retried", "retry_at", retryAt, "err", herr)
	case outcomeFailed:
		qerr = w.cfg.Queue.Ack(wctx, job.ID)
		log.Warn("job failed", "err", herr)
	default:
		qerr = w.cfg.Queue.Ack(wctx, job.ID)
		log.Info("job completed")
	}
	if qerr != nil {
		log.Warn("job recorded but queue not updated; the reconciler will repair it", "err", qerr)
	}
	return o
}

func truncate(s string) string {
	if len(s) <= maxErrorLength {
		return s
	}
	s = s[:maxErrorLength]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
