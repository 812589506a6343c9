// Package app wires jobhook together from a Config: the database, Redis,
// the job types, the engine and the HTTP server. `jobhook serve` runs one
// App; end-to-end tests run several.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook"
	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/dashboard"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/metrics"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/redisconn"
	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

// App is a running jobhook: backends, engine and HTTP server.
type App struct {
	Config   *config.Config
	DB       *database.DB
	Redis    *redisconn.Conn
	Registry *jobs.Registry
	// Engine is the job engine; Service and Worker are its parts.
	Engine  *jobs.Engine
	Service *jobs.Service
	Worker  *jobs.Worker
	Echo    *echo.Echo
	// QStash is the in-process QStash in the embedded mode, else nil.
	QStash *qstashdev.Server
	// QStashClient publishes to QStash (remote or embedded), else nil.
	QStashClient *qstashclient.Client
	// Metrics are the Prometheus metrics of the engine and the HTTP
	// layer, served at /metrics (see metricsHandler).
	Metrics *metrics.Metrics
	// TracerProvider traces the HTTP requests, the engine and the
	// outbound calls; nil when tracing is off.
	TracerProvider trace.TracerProvider

	log *slog.Logger
	// tracing is the tracer provider built from the OTEL_* variables,
	// flushed at Shutdown; nil when off or given by WithTracerProvider.
	tracing   *tracing.Tracing
	jwks      *auth.JWKSVerifier
	schedules *schedules.File
	// triggers publishes the engine's triggers in the background.
	triggers *asyncTrigger
	server   *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// metricsServer serves /metrics on METRICS_ADDR (nil when unset);
	// metricsAddr is the address it listens on once started.
	metricsServer *http.Server
	metricsAddr   string
}

// WithTracerProvider traces the App with tp instead of the provider the
// OTEL_* variables ask for (tests: many Apps in one process, each with its
// own recorder). The App does not shut tp down.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// New opens the backends, migrates (unless MIGRATE_ON_START is false),
// and builds the engine (Start starts it). It logs
// one line per backend saying which it chose and why.
//
// JOBHOOK_CHAOS_TASKS=true is refused unless the binary was built with
// -tags chaos (the test job type chaos_record is compiled only then).
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.ChaosTasks && !chaosBuild {
		return nil, errNoChaosBuild
	}
	a := &App{Config: cfg}
	var err error
	if a.TracerProvider = o.tracerProvider; a.TracerProvider == nil {
		// Off unless OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set.
		if a.tracing, err = tracing.New(ctx, nil); err != nil {
			return nil, err
		}
		a.TracerProvider = a.tracing.TracerProvider()
	}
	if a.TracerProvider != nil {
		// Lines logged inside a span carry its trace_id and span_id.
		log = slog.New(tracing.LogHandler(log.Handler()))
	}
	a.log = log
	ok := false
	defer func() {
		if !ok {
			a.closeBackends()
		}
	}()
	switch {
	case a.tracing != nil:
		log.Info("traces: exported over OTLP/HTTP (service "+tracing.ServiceName()+")", "why", a.tracing.Why)
	case a.TracerProvider != nil:
		log.Info("traces: to the tracer provider given", "why", "WithTracerProvider")
	default:
		why, _ := tracing.Read(nil)
		log.Info("traces: off", "why", why.Why)
	}

	for _, w := range cfg.Warnings {
		log.Warn("not ready for production: " + w)
	}
	a.DB, err = database.Open(ctx, database.Options{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
	if err != nil {
		return nil, err
	}
	if cfg.DatabaseURL == "" {
		log.Info("database: SQLite file "+cfg.SQLitePath, "why", "DATABASE_URL not set")
	} else {
		log.Info("database: "+database.Describe(cfg.DatabaseURL), "why", "DATABASE_URL set")
	}
	if cfg.MigrateOnStart {
		n, err := a.DB.Migrate(ctx, log.With("component", "migrate"))
		if err != nil {
			return nil, err
		}
		log.Info("migrations applied", "count", n)
	}

	a.Redis, err = redisconn.Open(ctx, cfg.RedisURL)
	if err != nil {
		return nil, err
	}
	if a.Redis.Embedded != nil {
		log.Info("queue: embedded Redis on "+a.Redis.Embedded.Addr(), "why", "REDIS_URL not set; pending jobs are restored from the database at start")
	} else {
		log.Info("queue: "+redisconn.Describe(cfg.RedisURL), "why", "REDIS_URL set")
	}

	a.Registry = jobs.NewRegistry()
	if err := tasks.Register(a.Registry, tasks.Config{
		ScrapeAllowPrivate: cfg.ScrapeAllowPrivate,
		OpenAI: tasks.OpenAIConfig{
			BaseURL: cfg.OpenAIBaseURL, APIKey: cfg.OpenAIAPIKey,
			TextModel: cfg.OpenAITextModel, ImageModel: cfg.OpenAIImageModel,
		},
		ImagesDir:      cfg.ImagesDir,
		ImagesBaseURL:  cfg.ImagesBaseURL,
		Graph:          tasks.GraphConfig{BaseURL: cfg.GraphAPIBaseURL, Version: cfg.GraphAPIVersion},
		TracerProvider: a.TracerProvider,
	}); err != nil {
		return nil, err
	}
	if cfg.ChaosTasks {
		if err := registerChaosTasks(a.Registry, a.DB.Gorm); err != nil {
			return nil, err
		}
		log.Warn("test job type chaos_record registered", "why", "JOBHOOK_CHAOS_TASKS=true in a binary built with -tags chaos")
	}
	for _, register := range o.jobTypes {
		if err := register(a.Registry, a.DB.Gorm); err != nil {
			return nil, fmt.Errorf("register job types: %w", err)
		}
	}
	if err := checkDrainBudget(a.Registry, cfg); err != nil {
		return nil, err
	}
	if cfg.ScrapeAllowPrivate {
		log.Warn("web_scraping may reach private, loopback and link-local addresses", "why", "SCRAPE_ALLOW_PRIVATE=true")
	}

	secretTypes, err := jobs.CheckSecretFields(a.Registry)
	if err != nil {
		return nil, err
	}
	// JOBS_ENCRYPTION_KEY, or in development the key file beside the
	// SQLite file; production refuses to start without a key.
	keyring, err := openKeyring(cfg, secretTypes, log)
	if err != nil {
		return nil, err
	}

	var publisher jobs.Publisher
	signingCurrent, signingNext := cfg.QStashCurrentSigningKey, cfg.QStashNextSigningKey
	switch cfg.QStashMode() {
	case "remote":
		a.QStashClient, err = qstashclient.New(qstashclient.Config{BaseURL: cfg.QStashURL, Token: cfg.QStashToken, WorkerURL: cfg.WorkerURL,
			TracerProvider: a.TracerProvider})
		if err != nil {
			return nil, err
		}
		log.Info("qstash: "+cfg.QStashURL+", calling "+cfg.WorkerURL, "why", "QSTASH_TOKEN set")
	case "embedded":
		dev, generated, err := qstashdev.ConfigFromEnv()
		if err != nil {
			return nil, err
		}
		dev.Logger = log
		a.QStash, err = qstashdev.New(dev)
		if err != nil {
			return nil, err
		}
		signingCurrent, signingNext = a.QStash.SigningKeys()
		a.QStashClient, err = qstashclient.New(qstashclient.Config{
			BaseURL: "http://qstash.embedded", Token: a.QStash.Token(), WorkerURL: cfg.WorkerURL,
			HTTPClient:     &http.Client{Transport: a.QStash.Transport(), Timeout: qstashclient.DefaultTimeout},
			TracerProvider: a.TracerProvider,
		})
		if err != nil {
			return nil, err
		}
		why := "QSTASH_TOKEN not set; signing keys from the environment"
		if generated {
			why = "QSTASH_TOKEN not set; signing keys generated for this run"
		}
		log.Info("qstash: embedded, calling "+cfg.WorkerURL+" with signed requests", "why", why)
		f, err := loadSchedules(cfg.SchedulesFile)
		if err != nil {
			return nil, err
		}
		a.schedules = f
	default:
		log.Info("qstash: off; POST /api/workers runs only when called", "why", "QSTASH_TOKEN not set and EMBEDDED_QSTASH=false")
	}
	a.Metrics = metrics.New()
	if a.QStashClient != nil {
		a.triggers = newAsyncTrigger(jobs.CountPublishes(a.QStashClient, a.Metrics), log)
		publisher = a.triggers
	}
	keepCompleted, keepFailed := cfg.Retention()
	a.Engine, err = jobs.New(jobs.Config{
		DB: a.DB.Gorm, Redis: a.Redis.Client, RedisPrefix: cfg.RedisPrefix, Registry: a.Registry, Logger: log,
		Concurrency: cfg.WorkerConcurrency, JobTimeout: cfg.JobTimeout, LeaseDuration: cfg.LeaseDuration,
		MaxPayloadBytes: cfg.MaxPayloadBytes, Secrets: keyring,
		// Scheduled jobs are delivered, and drains triggered (after a
		// create, and when a drain ends with work left), through QStash.
		Publisher: publisher, TriggerWindow: cfg.TriggerWindow,
		InProcess: cfg.InProcessWorker, InProcessInterval: cfg.InProcessInterval, DrainBudget: cfg.DrainBudget,
		FlowLimits:         jobs.MergeFlowLimits(tasks.DefaultFlowLimits(), cfg.FlowLimitList()),
		RetentionCompleted: keepCompleted, RetentionFailed: keepFailed, Artifacts: imageArtifacts(cfg),
		Metrics: a.Metrics, TracerProvider: a.TracerProvider,
	})
	if err != nil {
		return nil, err
	}
	if err := a.Metrics.WatchDepth(a.Engine.Depth); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	a.Service, a.Worker = a.Engine.Service(), a.Engine.Worker()
	if err := a.Metrics.WatchUnfinished(a.Service.Unfinished); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if cfg.InProcessWorker {
		log.Info("worker: in-process too, after each create, when a retry or snooze falls due, and every "+cfg.InProcessInterval.String(), "why", "INPROCESS_WORKER=true")
	}
	limiter := ratelimit.New(a.Redis.Client, cfg.RedisPrefix+"ratelimit:", nil)
	createRate := ratelimit.Rate{PerMinute: cfg.CreateRatePerMinute, Burst: cfg.CreateBurst}
	authFailures := ratelimit.Failures{Limit: cfg.WorkerAuthFailuresPerMinute, Window: time.Minute}
	hcfg := handlers.Config{
		CreateLimit: func(ctx context.Context, user string) (bool, time.Duration, error) {
			return limiter.Allow(ctx, "create:"+user, createRate)
		},
		WorkerAuthLimit: workerAuthLimit{limiter, authFailures},
		HSTS:            cfg.Production(),
		AdminToken:      cfg.AdminToken,
		APIKeys:         apikeys.New(a.DB.Gorm, nil),
		Images:          &handlers.ImageFiles{Dir: cfg.ImagesDir, Name: tasks.ImageNamePattern},
		TrustedProxies:  cfg.TrustedProxyNets(),
		Service:         a.Service,
		Worker:          a.Worker,
		Verifier:        auth.NewHS256Verifier([]byte(cfg.AuthJWTSecret)),
		WorkerSecret:    cfg.WorkerSecret,
		DrainBudget:     cfg.DrainBudget,
		BodyLimit:       cfg.BodyLimitBytes,
		BatchBodyLimit:  cfg.BatchBodyLimitBytes,
		Metrics:         a.metricsHandler(),
		MetricsToken:    cfg.MetricsToken,
		ObserveRequest:  a.Metrics.ObserveRequest,
		Logger:          log,
	}
	if signingCurrent != "" || signingNext != "" {
		check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{
			CurrentSigningKey: signingCurrent,
			NextSigningKey:    signingNext,
			URL:               cfg.WorkerURL,
		})
		if err != nil {
			return nil, err
		}
		hcfg.WorkerAuth = append(hcfg.WorkerAuth, check)
		log.Info("worker auth: QStash signatures for "+cfg.WorkerURL+", or the bearer WORKER_SECRET", "why", "QStash signing keys set")
	}
	var verifiers []auth.AlgorithmVerifier
	if cfg.AuthJWKSURL != "" {
		// An unreachable JWKS does not stop the start: requests get 503
		// until a fetch succeeds.
		a.jwks, err = auth.NewJWKSVerifier(context.WithoutCancel(ctx), auth.JWKSConfig{
			URL: cfg.AuthJWKSURL, Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience,
			AuthorizedParties: cfg.AuthAuthorizedParties, RefreshRateLimit: cfg.AuthJWKSMinRefresh,
			Logger: log.With("component", "auth"),
		})
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, a.jwks)
		log.Info("auth: user tokens (RS256, ES256) checked against "+cfg.AuthJWKSURL, "why", "AUTH_JWKS_URL set")
	}
	if cfg.AuthJWTSecret != "" {
		verifiers = append(verifiers, auth.NewHS256Verifier([]byte(cfg.AuthJWTSecret)))
	}
	if hcfg.Verifier, err = auth.NewMultiVerifier(verifiers...); err != nil {
		return nil, err
	}
	a.Echo = handlers.New(hcfg)
	dashboard.Mount(a.Echo, dashboard.Config{
		Service: a.Service, Depth: a.Engine.Depth, AdminToken: cfg.AdminToken, Secure: cfg.Production(),
		Schedules: a.dashboardSchedules(), PublicURL: cfg.PublicURL,
		RetentionCompleted: cfg.RetentionCompleted, RetentionFailed: cfg.RetentionFailed,
		Limiter: limiter, Logger: log,
	})
	a.server = &http.Server{
		// Each request a server span, named by its route.
		Handler:           tracing.Handler(a.Echo, a.TracerProvider),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      hcfg.WriteTimeout(),
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.MetricsAddr != "" {
		a.metricsServer = newMetricsServer(a.Metrics.Handler(), cfg.MetricsToken, log)
	}
	if cfg.AuthJWTSecret == auth.DevJWTSecret {
		log.Warn("auth: development JWT secret in use; mint tokens with `jobhook token --user ID`", "why", "AUTH_JWT_SECRET not set")
	}
	if cfg.WorkerSecret == auth.DevWorkerSecret {
		log.Warn("worker auth: development WORKER_SECRET in use", "why", "WORKER_SECRET not set")
	}
	ok = true
	return a, nil
}

// Start starts the engine (it restores the queue from the database, then
// runs the reaper and, if enabled, the in-process worker), serves HTTP on
// ln, and starts the embedded QStash. It fails, serving nothing, when the
// queue cannot be restored.
func (a *App) Start(ln net.Listener) error {
	metricsLn, err := a.listenMetrics()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The in-process Redis starts empty, and a real one may have lost
	// entries: the database is the truth.
	if err := a.Engine.Start(ctx); err != nil {
		cancel()
		if metricsLn != nil {
			_ = metricsLn.Close()
		}
		return err
	}
	a.serveMetrics(metricsLn)
	a.cancel = cancel
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		// net/http's own answers to malformed requests become JSON errors.
		if err := a.server.Serve(handlers.ProtocolErrorListener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("http server stopped", "err", err)
		}
	}()
	a.log.Info("jobhook is serving", "addr", ln.Addr().String(), "public_url", a.Config.PublicURL)
	if a.QStash != nil {
		if err := a.QStash.Start(ctx); err != nil {
			a.log.Error("embedded qstash did not start", "err", err)
		} else if changes, err := schedules.Sync(ctx, a.QStashClient, a.schedules, a.Config.PublicURL, false); err != nil {
			a.log.Error("embedded qstash: schedules not loaded", "err", err)
		} else {
			for _, c := range changes {
				a.log.Info("embedded qstash: schedule "+c.Spec.ID, "cron", c.Spec.Cron, "destination", c.Spec.Destination)
			}
		}
	}
	if a.QStashClient != nil {
		// Jobs restored from the database run now, not at the next tick.
		if err := a.QStashClient.Trigger(ctx, 0); err != nil {
			a.log.Warn("start-up trigger not published; the next scheduled drain will run waiting jobs", "err", err)
		}
	}
	return nil
}

// ShutdownMargin is the most Shutdown takes after its context's deadline
// (the grace period), whatever the backends do: the engine gives up on
// the jobs it could not give back (logging their ids; the reaper recovers
// them), drain calls in flight answer, and the backends are closed.
const ShutdownMargin = 4 * time.Second

// closeTimeout bounds the closing of the backends at the end of Shutdown.
const closeTimeout = 500 * time.Millisecond

// traceFlushTimeout bounds the export of the last spans, beside the
// closing of the backends (within closeTimeout).
const traceFlushTimeout = 400 * time.Millisecond

// Shutdown stops the embedded QStash and the HTTP listener, stops every
// drain from claiming, lets running jobs finish until ctx's deadline (the
// grace period), releases the jobs still running so they run again soon,
// lets drain calls in flight answer with what they did, and closes the
// backends. It returns at most ShutdownMargin (plus closeTimeout) after
// ctx's deadline, even with a hung database or Redis, with an error
// naming what it could not finish.
func (a *App) Shutdown(ctx context.Context) error {
	if a.QStash != nil {
		_ = a.QStash.Close()
	}
	// Requests get a little longer than the jobs: a drain answers after
	// its jobs are finished or released.
	httpCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownMargin)
	if deadline, ok := ctx.Deadline(); ok {
		httpCtx, cancel = context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(ShutdownMargin))
	}
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- a.server.Shutdown(httpCtx) }()
	metricsDone := a.shutdownMetrics(httpCtx)
	engineErr := a.Engine.Shutdown(ctx)
	if a.triggers != nil {
		a.triggers.wait(httpCtx)
	}
	if a.cancel != nil {
		a.cancel()
	}
	err := errors.Join(<-httpDone, <-metricsDone, engineErr)
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-httpCtx.Done():
		err = errors.Join(err, fmt.Errorf("shutdown: work still running: %w", httpCtx.Err()))
	}
	closed := make(chan struct{})
	go func() {
		a.closeBackends()
		close(closed)
	}()
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		err = errors.Join(err, fmt.Errorf("shutdown: backends not closed within %s", closeTimeout))
	}
	return err
}

// checkDrainBudget refuses a DRAIN_BUDGET that some registered job type's
// timeout does not fit in: a drain starts a job only if its timeout fits
// in the rest of the budget, so such jobs would never run.
func checkDrainBudget(reg *jobs.Registry, cfg *config.Config) error {
	var tooLong []string
	longest := cfg.JobTimeout
	for _, typ := range reg.Types() {
		d := cfg.JobTimeout
		if h, ok := reg.Lookup(typ); ok {
			if th, ok := h.(jobs.TimeoutHandler); ok && th.Timeout() > 0 {
				d = th.Timeout()
			}
		}
		longest = max(longest, d)
		if d >= cfg.DrainBudget {
			tooLong = append(tooLong, fmt.Sprintf("%s (%s)", typ, config.FormatDuration(d)))
		}
	}
	if len(tooLong) == 0 {
		return nil
	}
	return fmt.Errorf("DRAIN_BUDGET (%s) does not fit the timeout of %s: a drain starts a job only if its timeout fits in the rest of the budget, so these jobs would never run; set DRAIN_BUDGET to at least %s (the longest timeout plus 30s), under your platform's request limit",
		config.FormatDuration(cfg.DrainBudget), strings.Join(tooLong, ", "), config.FormatDuration((longest + 30*time.Second).Truncate(time.Second)))
}

// workerAuthLimit adapts the limiter to the handlers' interface.
type workerAuthLimit struct {
	l *ratelimit.Limiter
	f ratelimit.Failures
}

func (w workerAuthLimit) Blocked(ctx context.Context, client string) (bool, time.Duration, error) {
	return w.l.Blocked(ctx, "worker-auth:"+client, w.f)
}

func (w workerAuthLimit) Fail(ctx context.Context, client string) error {
	return w.l.Fail(ctx, "worker-auth:"+client, w.f)
}

// loadSchedules reads the schedules file, or the committed default when
// the working folder has none.
func loadSchedules(path string) (*schedules.File, error) {
	f, err := schedules.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return schedules.Parse(jobhook.DefaultSchedules)
	}
	return f, err
}

// dashboardSchedules is the schedules file the dashboard shows: the one
// the embedded QStash runs, else the one `jobhook qstash sync` would send
// (nil, logged, when it does not load).
func (a *App) dashboardSchedules() *schedules.File {
	if a.schedules != nil {
		return a.schedules
	}
	f, err := loadSchedules(a.Config.SchedulesFile)
	if err != nil {
		a.log.Warn("dashboard: schedules file not shown", "file", a.Config.SchedulesFile, "err", err)
		return nil
	}
	return f
}

func (a *App) closeBackends() {
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
		defer cancel()
		if err := a.tracing.Shutdown(ctx); err != nil && a.log != nil {
			a.log.Warn("last spans not exported", "err", err)
		}
	}()
	defer func() { <-flushed }()
	if a.jwks != nil {
		a.jwks.Close()
	}
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if a.DB != nil {
		_ = a.DB.Close()
	}
}

// metricsHandler is what GET /metrics serves on the public API: nothing
// (404) when METRICS_ADDR moves the metrics to a listener of their own;
// else the metrics behind METRICS_TOKEN when it is set; without one, the
// metrics open in development and nothing (404) in production, where the
// operational data (job types, volumes, routes) is not for the public.
func (a *App) metricsHandler() http.Handler {
	switch {
	case a.Config.MetricsAddr != "":
		how := "open (no METRICS_TOKEN)"
		if a.Config.MetricsToken != "" {
			how = "with the bearer METRICS_TOKEN"
		}
		a.log.Info("metrics: GET /metrics on "+a.Config.MetricsAddr+" only, "+how+"; 404 on the public API", "why", "METRICS_ADDR set")
		return nil
	case a.Config.MetricsToken != "":
		a.log.Info("metrics: GET /metrics with the bearer METRICS_TOKEN", "why", "METRICS_TOKEN set")
	case a.Config.Production():
		a.log.Info("metrics: off (GET /metrics is 404)", "why", "APP_ENV=production and METRICS_TOKEN not set")
		return nil
	default:
		a.log.Info("metrics: GET /metrics open to anyone", "why", "development and METRICS_TOKEN not set")
	}
	return a.Metrics.Handler()
}
