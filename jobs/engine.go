package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// Engine defaults, beside the ones of the parts it builds
// (DefaultConcurrency, DefaultJobTimeout, DefaultLeaseDuration,
// DefaultPrefix, DefaultMaxPayloadBytes, DefaultTriggerWindow).
const (
	// DefaultDrainBudget is the budget of one in-process drain (and, in
	// handlers, of one POST /api/workers): a drain starts a job only if
	// the job's timeout fits in the rest of its budget, so the budget must
	// exceed the longest job timeout. The longest of jobhook's own types
	// is 3 m 5 s (Instagram and Facebook publishing); 4 minutes leaves
	// room for shorter jobs beside one of those, and keeps a drain's answer
	// (budget + at most 5 s) under a 5-minute request limit.
	DefaultDrainBudget = 4 * time.Minute
	// DefaultInProcessInterval is how often the in-process worker drains
	// unasked (for retries and scheduled jobs that fell due).
	DefaultInProcessInterval = time.Second
	// DefaultMaxLostAttempts is how many attempts in a row may lose their
	// worker (their lease expired) before the job fails: lost attempts do
	// not consume MaxAttempts, so this bound is what stops a job that
	// kills its worker every time.
	DefaultMaxLostAttempts = 5
	// DefaultMaxWait is how long after its start (its scheduled time, or
	// its creation) a job without an explicit expiry may keep waiting:
	// a deferral (RetryAfter) or a snooze that would run it later fails it
	// instead. A handler may set its own (see WaitLimiter).
	DefaultMaxWait = 72 * time.Hour
	// shutdownMargin bounds the wait for the engine's loops (the reaper,
	// the in-process runner) and the last wake-ups once the workers have
	// stopped: the loops are cancelled then, and each of their calls has a
	// deadline.
	shutdownMargin = time.Second
)

// Config configures an Engine. DB, Redis and Registry are required; every
// other field has a default.
type Config struct {
	// DB is the database, migrated (Postgres, or SQLite for development).
	DB *gorm.DB
	// Redis holds the queue.
	Redis redis.UniversalClient
	// RedisPrefix prefixes the queue's keys. Defaults to DefaultPrefix.
	RedisPrefix string
	// Registry holds the job types.
	Registry *Registry
	// Clock defaults to the system clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// Concurrency is how many jobs one drain runs at once. Defaults to
	// DefaultConcurrency.
	Concurrency int
	// JobTimeout bounds a handler that does not set its own. Defaults to
	// DefaultJobTimeout.
	JobTimeout time.Duration
	// LeaseDuration is how long a claimed job's lease lasts; the heartbeat
	// renews it while the handler runs, and the reaper returns the jobs of
	// a dead worker within about one lease. Defaults to
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Backoff spaces retries. Defaults to
	// ExponentialBackoff(DefaultBackoffBase, DefaultBackoffMax, nil).
	Backoff BackoffFunc
	// MaxPayloadBytes limits a payload's size. Defaults to
	// DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// Secrets seals and opens the secret payload fields (see
	// SecretFielder). Without it, types with secret fields cannot be
	// created.
	Secrets secretfields.Sealer

	// Publisher, when set, delivers scheduled jobs at their time and
	// triggers worker calls (QStash): after a create, and when a drain ends
	// with work left, debounced across servers within TriggerWindow; and
	// when a retry or a snooze falls due, one wake-up per second in which
	// jobs fall due, coalesced across servers.
	Publisher Publisher
	// TriggerWindow is the debounce window of the triggers. Defaults to
	// DefaultTriggerWindow.
	TriggerWindow time.Duration
	// DisableTriggers publishes no triggers (nor wake-ups) through
	// Publisher; scheduled jobs are still delivered through it.
	DisableTriggers bool

	// InProcess runs drains in this process too: at once after each
	// create, when a retry or a snooze falls due, and every
	// InProcessInterval.
	InProcess bool
	// InProcessInterval defaults to DefaultInProcessInterval.
	InProcessInterval time.Duration
	// DrainBudget is the budget of an in-process drain. Defaults to
	// DefaultDrainBudget.
	DrainBudget time.Duration
	// ReconcileInterval is the least time between two passes that make
	// Redis agree with the database (a pass reads every pending job), across
	// every process sharing the Redis. Defaults to DefaultReconcileInterval.
	ReconcileInterval time.Duration

	// MaxLostAttempts is how many attempts of a job in a row may lose
	// their lease (the worker died or stalled) before the job fails with
	// "worker lost repeatedly". A lost attempt does not count against the
	// job's maxAttempts; a real outcome resets the streak. Defaults to
	// DefaultMaxLostAttempts.
	MaxLostAttempts int
	// RetentionCompleted is how long completed jobs are kept after they
	// finished, RetentionFailed how long failed and cancelled ones are:
	// the reconcile pass (at most once a ReconcileInterval) then deletes
	// them in small batches, each top-level job with its children,
	// attempts and effects; a job with an unfinished child is kept. Zero
	// is the default (DefaultRetentionCompleted, DefaultRetentionFailed);
	// negative keeps them forever.
	RetentionCompleted, RetentionFailed time.Duration
	// Artifacts, when set, lets the reconcile pass delete the files jobs
	// recorded with HoldArtifact once no remaining job names them (see
	// Artifacts). Unset: the records stay and no file is deleted.
	Artifacts Artifacts

	// FlowLimits are the limits of the flow keys (see FlowKeyer), by key
	// prefix; the longest matching prefix applies, and a key no prefix
	// matches has no limit (it can still be paused by its provider's
	// signals). Enforced at claim time across every instance sharing the
	// Redis. Every instance should have the same limits.
	FlowLimits []FlowLimit

	// DefaultMaxWait sets the expiry of a job created without one: its
	// scheduled time (or its creation) plus this, unless its handler is a
	// WaitLimiter. Defaults to DefaultMaxWait.
	DefaultMaxWait time.Duration

	// Metrics, when set, receives the engine's measurements: jobs created,
	// claimed and finished by type and outcome, attempt durations and queue
	// waits, drains, completer batches and flow-key pauses (see
	// internal/metrics for the Prometheus one); wrap Publisher in
	// CountPublishes to count its calls too. Defaults to none.
	Metrics Metrics
	// TracerProvider, when set, traces the engine: a span for each create
	// (storing its traceparent with the job), each Drain and each attempt
	// (the child of its job's stored traceparent, linked to its drain),
	// with the attempt's context handed to the handler. Nil is off: no
	// spans, no traceparents, nothing allocated.
	TracerProvider trace.TracerProvider
}

// validate names every problem of cfg at once.
func (cfg Config) validate() error {
	var errs []error
	if cfg.DB == nil {
		errs = append(errs, errors.New("DB is required"))
	}
	if cfg.Redis == nil {
		errs = append(errs, errors.New("Redis is required"))
	}
	if cfg.Registry == nil {
		errs = append(errs, errors.New("Registry is required"))
	}
	for _, c := range []struct {
		name string
		v    time.Duration
	}{
		{"JobTimeout", cfg.JobTimeout}, {"LeaseDuration", cfg.LeaseDuration}, {"TriggerWindow", cfg.TriggerWindow},
		{"InProcessInterval", cfg.InProcessInterval}, {"DrainBudget", cfg.DrainBudget},
		{"ReconcileInterval", cfg.ReconcileInterval}, {"DefaultMaxWait", cfg.DefaultMaxWait},
	} {
		if c.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %s)", c.name, c.v))
		}
	}
	if cfg.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("Concurrency must not be negative (got %d)", cfg.Concurrency))
	}
	if cfg.MaxPayloadBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxPayloadBytes must not be negative (got %d)", cfg.MaxPayloadBytes))
	}
	if cfg.MaxLostAttempts < 0 {
		errs = append(errs, fmt.Errorf("MaxLostAttempts must not be negative (got %d)", cfg.MaxLostAttempts))
	}
	for _, l := range cfg.FlowLimits {
		if err := l.check(); err != nil {
			errs = append(errs, fmt.Errorf("FlowLimits: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("jobs: invalid engine config: %w", errors.Join(errs...))
	}
	return nil
}

// withDefaults fills the zero fields the engine itself uses; the parts it
// builds default the rest.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.InProcessInterval == 0 {
		cfg.InProcessInterval = DefaultInProcessInterval
	}
	if cfg.DrainBudget == 0 {
		cfg.DrainBudget = DefaultDrainBudget
	}
	if cfg.MaxLostAttempts == 0 {
		cfg.MaxLostAttempts = DefaultMaxLostAttempts
	}
	if cfg.DefaultMaxWait == 0 {
		cfg.DefaultMaxWait = DefaultMaxWait
	}
	return cfg
}

// Engine is jobhook's job engine, built from one Config: the Service that
// creates and reads jobs, the Worker whose drains run them (with their
// completer and heartbeat), the reaper and reconciler that repair the
// queue, the debounced trigger, and the in-process runner when enabled.
// Start restores the queue and starts the background loops; Shutdown stops
// them in a fixed order.
type Engine struct {
	cfg        Config
	queue      *redisQueue
	reconciler *reconciler
	worker     *Worker
	service    *Service
	runner     *runner
	// wakeups, when set, arranges the drains at the times retries and
	// snoozes fall due.
	wakeups *wakeups
	// notify asks for a drain: the runner's kick and the trigger, as
	// configured.
	notify func(ctx context.Context)

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	loops   sync.WaitGroup
}

// New builds an Engine; it starts nothing.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	e := &Engine{cfg: cfg}
	e.queue = newRedisQueue(cfg.Redis, cfg.RedisPrefix, cfg.Clock, cfg.FlowLimits...)
	// A reaped child that makes its parent due, a create, and a drain that
	// ends with work left all ask for a drain through e.notify.
	ask := func(ctx context.Context) {
		if e.notify != nil {
			e.notify(ctx)
		}
	}
	e.reconciler = newReconciler(reconcilerConfig{DB: cfg.DB, Queue: e.queue, Clock: cfg.Clock, Logger: log, Interval: cfg.ReconcileInterval, MaxLost: cfg.MaxLostAttempts, Notify: ask,
		RetentionCompleted: cfg.RetentionCompleted, RetentionFailed: cfg.RetentionFailed, Artifacts: cfg.Artifacts})
	var trigger func(context.Context)
	if cfg.Publisher != nil && !cfg.DisableTriggers {
		trigger = newTriggerer(e.queue, cfg.Publisher, cfg.TriggerWindow, log).Notify
	}
	e.worker = newWorker(workerConfig{
		DB: cfg.DB, Queue: e.queue, Registry: cfg.Registry, Clock: cfg.Clock, Logger: log,
		Concurrency: cfg.Concurrency, JobTimeout: cfg.JobTimeout, LeaseDuration: cfg.LeaseDuration, Backoff: cfg.Backoff,
		reconciler: e.reconciler, Secrets: cfg.Secrets, Notify: trigger,
		Children: childCreatorFunc(func(ctx context.Context, parent *models.Job, i int, spec ChildSpec) (*models.Job, error) {
			return e.service.CreateChild(ctx, parent, i, spec)
		}),
	})
	e.notify = trigger
	if cfg.InProcess {
		if longest := e.worker.maxTimeout(); cfg.DrainBudget <= longest {
			log.Warn("the in-process drain budget does not fit the longest job timeout: jobs of that length never run in process",
				"drain_budget", cfg.DrainBudget, "longest_timeout", longest)
		}
		e.runner = newRunner(e.worker, cfg.DrainBudget, cfg.InProcessInterval, cfg.Clock, log)
		kick := e.runner.Kick
		if trigger != nil {
			e.notify = func(ctx context.Context) { kick(ctx); trigger(ctx) }
		} else {
			e.notify = kick
		}
	}
	e.service = newService(serviceConfig{
		DB: cfg.DB, Queue: e.queue, Registry: cfg.Registry, Clock: cfg.Clock, Logger: log,
		MaxPayloadBytes: cfg.MaxPayloadBytes, MaxWait: cfg.DefaultMaxWait, Notify: ask, Publisher: cfg.Publisher, Secrets: cfg.Secrets,
		Interrupt: func(running []store.Fence) { e.worker.beat.interrupt(running, ErrCancelled) },
	})
	m := metricsOr(cfg.Metrics)
	e.worker.tracer = newTracer(cfg.TracerProvider)
	e.service.tracer = e.worker.tracer
	for _, f := range []*finisher{e.worker.fin, e.reconciler.fin, e.service.fin} {
		f.metrics = m
	}
	// Jobs put back with a due time (retries, snoozes) wake a drain then,
	// whichever part put them back.
	var wakePublisher Publisher
	if cfg.Publisher != nil && !cfg.DisableTriggers {
		wakePublisher = cfg.Publisher
	}
	if wakePublisher != nil || e.runner != nil {
		e.wakeups = newWakeups(e.queue, wakePublisher, e.runner, cfg.Clock, log)
		for _, f := range []*finisher{e.worker.fin, e.reconciler.fin, e.service.fin} {
			f.wake = e.wakeups.At
		}
	}
	return e, nil
}

// childCreatorFunc adapts a function to childCreator.
type childCreatorFunc func(ctx context.Context, parent *models.Job, i int, spec ChildSpec) (*models.Job, error)

func (f childCreatorFunc) CreateChild(ctx context.Context, parent *models.Job, i int, spec ChildSpec) (*models.Job, error) {
	return f(ctx, parent, i, spec)
}

// Service returns the engine's Service: create, read, cancel, reschedule.
func (e *Engine) Service() *Service { return e.service }

// Worker returns the engine's Worker, whose Drain a worker endpoint calls.
func (e *Engine) Worker() *Worker { return e.worker }

// Depth counts the jobs in each of the queue's sets.
func (e *Engine) Depth(ctx context.Context) (Depth, error) { return e.queue.Depth(ctx) }

// Start restores the queue from the database (the database is the truth:
// an in-process Redis starts empty, a real one may have lost entries),
// then starts the reaper, which returns the jobs of dead workers about one
// lease after their last renewal even when no drain runs, and the
// in-process runner when enabled.
// It returns an error only when the restore fails; nothing is started
// then.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return errors.New("jobs: engine already started")
	}
	if _, err := e.reconciler.Run(ctx); err != nil {
		return fmt.Errorf("jobs: restore the queue from the database: %w", err)
	}
	e.started = true
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		e.reap(loopCtx)
	}()
	if e.runner != nil {
		e.loops.Add(1)
		go func() {
			defer e.loops.Done()
			e.runner.Run(loopCtx)
		}()
		e.runner.Kick(loopCtx)
	}
	return nil
}

// reap reaps expired leases until ctx ends: just after the earliest lease
// of a running job ends, so that a dead worker's jobs are back within
// about one lease of its last renewal, and at least every half lease (a
// job claimed since has a lease of its own, ending later).
func (e *Engine) reap(ctx context.Context) {
	lease := e.worker.cfg.LeaseDuration
	for wait := e.reconciler.nextReap(ctx, lease); ; wait = e.reconciler.nextReap(ctx, lease) {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, reapTimeout)
		_, err := e.reconciler.Reap(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("reap failed", "err", err)
		}
	}
}

// Shutdown stops the engine in a fixed order: every drain stops claiming,
// the running handlers finish until ctx is done (the grace period), the
// ones still running are cancelled and their jobs given back to the queue,
// their outcomes are written; then the runner and the reaper stop, and the
// wake-ups still being published end. Once ctx is done it returns within
// releaseTimeout + shutdownMargin whatever the backends do, with an error
// naming the jobs it could not give back (the reaper recovers them) or
// saying that the loops had not ended.
func (e *Engine) Shutdown(ctx context.Context) error {
	werr := e.worker.Shutdown(ctx)
	e.mu.Lock()
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() {
		e.loops.Wait()
		if e.wakeups != nil {
			// The wake-ups of the last outcomes written are on their way.
			wctx, stop := context.WithTimeout(context.WithoutCancel(ctx), shutdownMargin)
			e.wakeups.wait(wctx)
			stop()
		}
		close(done)
	}()
	t := time.NewTimer(shutdownMargin)
	defer t.Stop()
	select {
	case <-done:
		return werr
	case <-t.C:
		return errors.Join(werr, fmt.Errorf("jobs: engine loops still running %s after the workers stopped", shutdownMargin))
	}
}
