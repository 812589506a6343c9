package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// Worker defaults.
const (
	DefaultConcurrency = 8
	DefaultJobTimeout  = time.Minute
	// DefaultLeaseDuration is the lease of a claimed job, renewed by the
	// heartbeat (every third of it) while its handler runs. It bounds how
	// long a dead worker's jobs stay stranded: the reaper wakes just after
	// the earliest lease ends, so they are back within about 9.1 s of a
	// kill -9. Renewals are batched (one statement per tick for every job
	// a worker runs), so a short lease is cheap; a renewal may be late by
	// up to two thirds of it before the job is taken away.
	DefaultLeaseDuration = 9 * time.Second
	// maxErrorLength caps the error text stored on a job.
	maxErrorLength = store.MaxErrorLength
	// claimCooldown is the longest a freed slot waits, while other jobs
	// of the drain still run, for more slots to free before a claim fills
	// them: claims come in batches, at most one per cooldown, instead of
	// one per finished job.
	claimCooldown = time.Millisecond
	// promoteEvery is how often a busy drain promotes the delayed jobs
	// that fell due (one Redis call); a drain that finds the queue empty
	// promotes them at once.
	promoteEvery = time.Second
	// maxClaimsInFlight is how many claims one drain runs at once.
	maxClaimsInFlight = 2
	// claimRetryFor is how long a claim whose write failed on a transient
	// error is retried before its ids go back to the queue.
	claimRetryFor = 3 * time.Second
)

// workerConfig builds a Worker.
type workerConfig struct {
	DB       *gorm.DB
	Queue    *redisQueue
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
	// LeaseDuration is how long a claimed job's lease lasts; a heartbeat
	// renews it every third of it while the handler runs, so a dead
	// worker's jobs are back in the queue within one lease. Defaults to
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Backoff spaces retries. Defaults to
	// ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, nil).
	Backoff BackoffFunc
	// reconciler, when set, reaps expired leases at the start of every
	// drain and reconciles Redis at most once per its interval.
	reconciler *reconciler
	// Notify, when set, is called when a drain ends with work left, to
	// start another worker call (a debounced trigger).
	Notify func(ctx context.Context)
	// Secrets opens the secret payload fields of claimed jobs (see
	// SecretFielder). Without it, a job with sealed fields fails.
	Secrets secretfields.Sealer
	// Children creates child jobs for SpawnChildren (the Service).
	Children childCreator
}

// Worker drains the queue: it claims jobs, runs their handlers and records
// the outcome. Many drains may run at once, in one process or many.
type Worker struct {
	cfg workerConfig
	log *slog.Logger

	// stop closes when Shutdown begins: drains stop claiming.
	stop chan struct{}
	// gaveUp closes when Shutdown gave up on jobs it could not give back
	// (a failed or hung backend): a drain still waiting for outcomes then
	// answers at once with what it has.
	gaveUp     chan struct{}
	gaveUpOnce sync.Once
	// kicked holds a kick: work was queued in this process (see kick).
	kicked   chan struct{}
	stopOnce sync.Once
	// abort cancels the handlers still running when the grace period ends.
	abortCtx context.Context
	abort    context.CancelFunc
	// running counts jobs in handlers, across drains.
	running *runningSet

	store *store.Store
	fin   *finisher
	// beat renews the leases of the jobs running, across drains.
	beat *heartbeat
	// testCompleter, when set, adjusts each drain's completer (tests).
	testCompleter func(*completer)
	// tracer starts the drain and attempt spans; off unless the engine
	// has a TracerProvider.
	tracer tracer
}

// newWorker returns a Worker.
func newWorker(cfg workerConfig) *Worker {
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
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.Backoff == nil {
		cfg.Backoff = ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, nil)
	}
	abortCtx, abort := context.WithCancel(context.Background())
	w := &Worker{cfg: cfg, log: cfg.Logger.With("component", "worker"), stop: make(chan struct{}), gaveUp: make(chan struct{}), kicked: make(chan struct{}, 1), abortCtx: abortCtx, abort: abort, running: newRunningSet()}
	w.store = store.New(cfg.DB)
	w.beat = newHeartbeat(cfg.LeaseDuration, cfg.Clock, w.store, cfg.Queue, w.log)
	w.fin = &finisher{store: w.store, queue: cfg.Queue, clock: cfg.Clock, log: w.log, notify: cfg.Notify, metrics: noMetrics{}}
	return w
}

// Shutdown stops every drain from claiming, lets the running handlers
// finish until ctx is done, then cancels the rest and gives their jobs back
// to the queue (their attempt does not count) so they run again soon. It
// returns when every handler has returned and every outcome is written, or
// releaseTimeout after ctx is done, whatever the backends do: the jobs not
// given back by then (a failing or hung database) are logged by id and
// named in the error; they stay processing and the reaper recovers them
// once their lease ends.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	done := w.running.close()
	select {
	case <-done:
		w.beat.wait() // every handler returned: the ticker ends
		return nil
	case <-ctx.Done():
	}
	w.log.Warn("grace period over: releasing the jobs still running")
	w.abort()
	t := time.NewTimer(releaseTimeout)
	defer t.Stop()
	select {
	case <-done:
		w.beat.wait()
		return nil
	case <-t.C:
	}
	w.gaveUpOnce.Do(func() { close(w.gaveUp) })
	ids := w.running.members()
	w.log.Error("shutdown: jobs not given back in time (a backend failed or hung); they stay processing and the reaper recovers them when their lease ends",
		"count", len(ids), "job_ids", ids, "waited", releaseTimeout)
	return fmt.Errorf("jobs: %d jobs not given back within %s after the grace period (ids %v): %w", len(ids), releaseTimeout, ids, ErrUnavailable)
}

func (w *Worker) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// maxTimeout is the longest timeout of any registered job type.
func (w *Worker) maxTimeout() time.Duration {
	_, longest := w.timeouts()
	return longest
}

// timeouts are the shortest and the longest timeout of the registered job
// types (JobTimeout for a type that sets none).
func (w *Worker) timeouts() (shortest, longest time.Duration) {
	shortest, longest = w.cfg.JobTimeout, w.cfg.JobTimeout
	for i, typ := range w.cfg.Registry.Types() {
		d := w.timeoutOfType(typ)
		if i == 0 || d < shortest {
			shortest = d
		}
		longest = max(longest, d)
	}
	return shortest, longest
}

// timeoutOfType is the timeout of a job of type typ: its handler's own, or
// JobTimeout (for an unknown type too).
func (w *Worker) timeoutOfType(typ string) time.Duration {
	if h, ok := w.cfg.Registry.Lookup(typ); ok {
		if th, ok := h.(TimeoutHandler); ok && th.Timeout() > 0 {
			return th.Timeout()
		}
	}
	return w.cfg.JobTimeout
}

// DrainSummary says what one drain did.
type DrainSummary struct {
	// Promoted counts scheduled and delayed jobs that became due.
	Promoted int `json:"promoted"`
	// Reenqueued counts pending jobs the reconciler found missing from Redis.
	Reenqueued int `json:"reenqueued"`
	// Reaped counts processing jobs whose lease had expired, returned to
	// the queue.
	Reaped int `json:"reaped"`
	// Claimed counts jobs this drain ran.
	Claimed   int `json:"claimed"`
	Completed int `json:"completed"`
	Retried   int `json:"retried"`
	Failed    int `json:"failed"`
	// Skipped counts claimed ids whose job was already finished, cancelled,
	// not yet due or running elsewhere.
	Skipped int `json:"skipped"`
	// Released counts jobs given back unfinished at shutdown.
	Released int `json:"released"`
	// LeftForTime counts claimed jobs given back unrun, at their place in
	// the queue and with their attempt not counted, because their timeout
	// did not fit in the rest of the budget; the drain stopped claiming
	// then. A drain with a longer budget runs them.
	LeftForTime int `json:"leftForTime"`
	// Unrecorded counts outcomes the drain could not write before it
	// answered (a failed or hung backend): those jobs stay processing and
	// the reaper recovers them when their lease ends.
	Unrecorded int `json:"unrecorded"`
	// Snoozed counts jobs that ran and now wait (for their children).
	Snoozed int `json:"snoozed"`
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
	outcomeLost     // the job's row had moved on: nothing recorded
	outcomeReleased // given back at shutdown
	outcomeSnoozed  // waiting (for its children)
)

// run runs one claimed job and records its outcome. The Worker's heartbeat
// renews the job's lease while the handler runs; if the lease is lost (the
// job was cancelled, or reaped and maybe claimed again elsewhere, or
// renewals failed until it nearly ran out) the handler's context is
// cancelled, with ErrCancelled as its cause for a cancel, and nothing is
// recorded. leased is when the claim began, on the real clock: the lease
// runs from then, not from the handler's start.
func (w *Worker) run(ctx context.Context, job *models.Job, leased time.Time) (r ran) {
	// The attempt's span: the handler's calls are its children, and its
	// log lines carry its ids.
	ctx, span := w.tracer.startAttempt(ctx, job)
	defer func() {
		r.ctx = ctx
		endAttempt(span, r)
	}()
	log := w.log.With("job_id", job.ID, "type", job.Type, "attempt", job.Attempts)
	started := w.cfg.Clock.Now().UTC()
	job, err := w.decryptSecrets(job) // the handler's copy; the row keeps the ciphertext
	if err != nil {
		return w.finish(log, job, started, nil, err)
	}
	h, ok := w.cfg.Registry.Lookup(job.Type)
	if !ok {
		return w.finish(log, job, started, nil, Permanent(fmt.Errorf("no handler registered for job type %q", job.Type)))
	}
	timeout := w.timeoutOfType(job.Type)
	// The heartbeat cancels lctx, with ErrCancelled or ErrLeaseLost as
	// its cause, when the job's row moves on.
	lctx, cancelLease := context.WithCancelCause(ctx)
	defer cancelLease(nil)
	jctx, cancel := context.WithTimeoutCause(lctx, timeout, errJobTimeout)
	defer cancel()
	stopAbort := context.AfterFunc(w.abortCtx, func() { cancel() })
	defer stopAbort()
	beat := w.beat.add(fenceOf(job), cancelLease, leased)
	hctx := withJobContext(jctx, &jobContext{w: w, job: job})
	result, err := w.safeHandle(hctx, log, h, job)
	cancel()
	if w.beat.remove(beat) {
		if beat.cause == ErrCancelled {
			log.InfoContext(ctx, "job cancelled while running; its outcome is dropped")
		} else {
			log.WarnContext(ctx, "lease lost while running; the outcome is dropped (the job runs again elsewhere)")
		}
		return ran{o: outcomeLost}
	}
	if err != nil && w.abortCtx.Err() != nil && ctx.Err() == nil {
		return w.release(log, job, started)
	}
	if err == nil && len(result) > 0 && !json.Valid(result) {
		err = Permanent(errors.New("handler returned a result that is not valid JSON"))
	}
	if err != nil && context.Cause(jctx) == errJobTimeout && ctx.Err() == nil {
		err = fmt.Errorf("job timed out after %s: %w", timeout, err)
	}
	return w.finish(log, job, started, result, err)
}

var errJobTimeout = errors.New("job timeout")

// release gives an unfinished job back at shutdown: pending again, now, and
// the interrupted attempt does not count.
func (w *Worker) release(log *slog.Logger, job *models.Job, started time.Time) ran {
	return w.transition(log, job, started, store.Released(), false)
}

func (w *Worker) safeHandle(ctx context.Context, log *slog.Logger, h Handler, job *models.Job) (res json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			// The stack goes to the log only; the job keeps a short message.
			msg := scrub(fmt.Sprint(r), w.secretValuesOf(job))
			log.ErrorContext(ctx, "handler panicked", "panic", msg, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %s", msg)
		}
	}()
	return h.Handle(ctx, job)
}

// finish turns a handler's result into a transition and records it.
//
// Only a real failure counts as an attempt. A RetryAfter defers the job
// (the attempt does not count, however many came before), and a Snooze
// waits; but a deferral or a snooze whose next run would come after the
// job's expiry fails the job instead, with the reason. A wait for the
// job's children (AwaitChildren) is not bounded by the expiry: the
// children are bounded themselves. Permanent wins over RetryAfter.
func (w *Worker) finish(log *slog.Logger, job *models.Job, started time.Time, result json.RawMessage, herr error) ran {
	now := w.cfg.Clock.Now().UTC()
	var errText string
	if herr != nil {
		// Secret values never reach the row, the history or the log.
		errText = truncate(scrub(herr.Error(), w.secretValuesOf(job)))
	}
	var t store.Transition
	forChildren := false
	if sn, ok := snoozeOf(herr); ok {
		at := now.Add(sn.after)
		if reason, late := pastExpiry(job, at); late && !sn.forChildren {
			t = store.Failed(truncate(errText + ": " + reason))
		} else {
			t, forChildren = store.Snoozed(at), sn.forChildren
		}
	} else {
		d, deferred := retryAfterDelay(herr)
		switch {
		case herr == nil:
			t = store.Completed(result)
		case IsPermanent(herr):
			t = store.Failed(errText)
		case deferred:
			// No sooner than the backoff of the attempt either, so that a
			// RetryAfter(err, 0) cannot spin.
			at := now.Add(max(d, w.cfg.Backoff(job.Attempts)))
			reason, late := pastExpiry(job, at)
			if p, ok := flowPauseOf(herr); ok {
				// The key pauses for every job on it, whatever becomes of
				// this one.
				id := job.ID
				if late {
					id = 0
				}
				_ = w.pauseFlow(w.abortCtx, p.Key, p.After, truncate(p.Reason), id)
			}
			if late {
				t = store.Failed(truncate(errText + ": " + reason))
			} else {
				t = store.Deferred(at, errText)
			}
		case job.Attempts >= job.MaxAttempts:
			t = store.Failed(errText)
		default:
			t = store.Retry(now.Add(w.cfg.Backoff(job.Attempts)), errText)
		}
	}
	return w.transition(log, job, started, t, forChildren)
}

// pastExpiry reports whether a job's next run at at would come after its
// expiry, and the reason the wait is given up.
func pastExpiry(job *models.Job, at time.Time) (string, bool) {
	if job.ExpiresAt == nil || !at.After(*job.ExpiresAt) {
		return "", false
	}
	return fmt.Sprintf("gave up waiting: the next attempt at %s would be after the job expires at %s",
		at.UTC().Format(time.RFC3339), job.ExpiresAt.UTC().Format(time.RFC3339)), true
}

// ran is what running one job came to: a transition to record, or (when
// write is false) an outcome with nothing to record.
type ran struct {
	write bool
	log   *slog.Logger
	// ctx is the attempt's context (its span), for the lines logged
	// once the outcome is written; nil for a job that did not run.
	ctx  context.Context
	item finishing
	o    outcome
}

// logContext is the context r's lines are logged with.
func (r ran) logContext() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// transition is a running job's transition, to be recorded by the
// completer.
func (w *Worker) transition(log *slog.Logger, job *models.Job, started time.Time, t store.Transition, wakeSelf bool) ran {
	it := finishing{update: store.Update{Fence: fenceOf(job), Transition: t, StartedAt: started, Now: w.cfg.Clock.Now()}, typ: job.Type, wakeSelf: wakeSelf}
	return ran{write: true, log: log, item: it}
}

// recorded says what a transition came to once the completer wrote it.
func (w *Worker) recorded(r ran, a store.Applied, err error) outcome {
	if err != nil {
		// The row stays processing; its lease expiry brings it back.
		r.log.ErrorContext(r.logContext(), "could not record job outcome", "err", err)
		return outcomeLost
	}
	if !a.Applied && w.cancelledWhileRunning(r.item.update.Fence.ID) {
		r.log.InfoContext(r.logContext(), "job cancelled while running; its outcome is dropped", "transition", string(r.item.update.Transition.Kind()))
		return outcomeLost
	}
	return w.outcomeOf(r.logContext(), r.log, r.item.update.Transition, a)
}

// outcomeOf logs what a recorded transition did (with ctx, the attempt's)
// and names it for the drain's summary.
func (w *Worker) outcomeOf(ctx context.Context, log *slog.Logger, t store.Transition, a store.Applied) outcome {
	if !a.Applied {
		log.WarnContext(ctx, "job moved on while running (cancelled, or its lease was taken over); outcome dropped", "transition", string(t.Kind()))
		return outcomeLost
	}
	switch t.Kind() {
	case store.KindCompleted:
		log.InfoContext(ctx, "job completed")
		return outcomeCompleted
	case store.KindRetry:
		log.InfoContext(ctx, "job will be retried", "retry_at", t.At(), "err", t.Err())
		return outcomeRetried
	case store.KindDeferred:
		log.InfoContext(ctx, "job deferred; the attempt does not count", "retry_at", t.At(), "err", t.Err())
		return outcomeRetried
	case store.KindSnoozed:
		log.DebugContext(ctx, "job waits", "until", t.At())
		return outcomeSnoozed
	case store.KindReleased:
		log.InfoContext(ctx, "job released at shutdown")
		return outcomeReleased
	default:
		log.WarnContext(ctx, "job failed", "err", t.Err())
		return outcomeFailed
	}
}

func truncate(s string) string { return store.Truncate(s) }
