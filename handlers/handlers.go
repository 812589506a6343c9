// Package handlers is jobhook's HTTP layer on Echo v4: the routes, their
// request and response types, bearer-token auth, the worker endpoint's
// authentication, and the one mapping from errors to JSON responses. It
// holds no business logic: each handler decodes a request, calls
// jobs.Service or the worker, and encodes the answer.
//
// # Routes
//
//	GET  /                     small HTML page: "jobhook is running"
//	GET  /healthz              200 {"status":"ok"} while the process is up
//	GET  /readyz               200 {"status":"ready","checks":{...}} or 503 not_ready
//	GET  /openapi.json         the OpenAPI 3.1 description of these routes (openapi.json, embedded)
//	POST /api/jobs             create a job: 201 {"jobId":1,"status":"pending"}, 200 on an Idempotency-Key replay
//	POST /api/jobs/batch       create up to 1000 jobs, all or nothing: {"jobs":[…]} → 201
//	                           {"jobs":[{"created":true,"job":{"jobId":1,"status":"pending"}},…]}
//	GET  /api/jobs             list own jobs: ?status=&type=&user=&parent=&createdFrom=&createdTo=&error=&cursor=&limit= → {"jobs":[...],"nextCursor":"..."}
//	GET  /api/jobs/stats       own jobs counted by status and type (?since=24h), finished per minute over the last hour
//	POST /api/jobs/retry       retry the failed jobs ?status=&type=&user=&parent=&createdFrom=&createdTo=&error= match (up to 1000)
//	GET  /api/jobs/:id         one own job: the bare job object plus "history", its finished attempts
//	POST /api/jobs/:id/cancel  cancel an unfinished job and its children → the job
//	POST /api/jobs/:id/reschedule  {"scheduledFor":"RFC 3339"} → the moved job
//	POST /api/jobs/:id/retry   re-queue a failed job with a fresh attempt budget → the job
//	GET  /api/flow-keys        the flow keys seen most recently (ADMIN_TOKEN only):
//	                           ?prefix=&limit= → {"keys":[{"key":"ig:…","running":1,"parked":4,…}]}
//	GET  /api/flow-keys/:key   one flow key's limit, slots, parked jobs and pause (ADMIN_TOKEN only)
//	POST /api/flow-keys/:key/pause   hold the key until resumed: {"reason":"…"} → its status (ADMIN_TOKEN only)
//	POST /api/flow-keys/:key/resume  end the key's hold or pause → its status (ADMIN_TOKEN only)
//	GET  /api/job-types        every job type and whether it is paused (ADMIN_TOKEN only)
//	POST /api/job-types/:type/pause  hold a type until resumed: {"reason":"…"} (ADMIN_TOKEN only)
//	POST /api/job-types/:type/resume end a type's hold (ADMIN_TOKEN only)
//	POST /api/keys             issue a service key {"name","scopes"} → the key, shown once (ADMIN_TOKEN only)
//	GET  /api/keys             every service key, never the keys themselves (ADMIN_TOKEN only)
//	POST /api/keys/:id/revoke  revoke a service key at once (ADMIN_TOKEN only)
//	POST /api/workers          run one drain (worker auth) → the drain summary; a body
//	                           {"jobId":N} (a QStash delayed delivery) first starts that
//	                           scheduled job when it is due
//	GET  /api/workers/jobs/:id any job, as an operator sees it (worker auth), for `jobhook trigger --wait`
//	GET  /files/images/:name   a generated image, when Config.Images is set
//	GET  /metrics              the Prometheus metrics, when Config.Metrics is set
//	                           (bearer METRICS_TOKEN when Config.MetricsToken is set)
//
// Every GET route answers HEAD too; OPTIONS, and any other method a route
// lacks, is 405 method_not_allowed with an Allow header.
//
// The /api/jobs routes need "Authorization: Bearer <JWT>"; the user id is
// the token's sub, and a user only ever sees their own jobs (another user's
// job is 404, so ids cannot be probed).
//
// # Errors
//
// Every error response has the shape
//
//	{"error":{"code":"invalid_priority","message":"...","fields":[{"field":"priority","message":"..."}]}}
//
// where code is stable and machine-readable, message is for people, and
// fields appears only on validation errors. ErrorCodes lists every code
// with its status and when it is sent; the README's error table shows the
// same list. Errors net/http answers itself, before any route (a bad
// %-escape in the path, a control character in a header), have the same
// shape when the server listens through ProtocolErrorListener.
//
// A 401 carries "WWW-Authenticate: Bearer".
package handlers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/jobs"
)

// Defaults of Config.
const (
	// DefaultDrainBudget is how long one POST /api/workers may drain
	// (DRAIN_BUDGET's default), the same as jobs.DefaultDrainBudget: a
	// drain starts a job only if its timeout fits in the rest of the
	// budget, and this one fits the longest of jobhook's job types (3 m
	// 5 s) with room to spare, while a drain's answer stays under a
	// 5-minute request limit.
	DefaultDrainBudget = jobs.DefaultDrainBudget
	// drainWriteMargin is what WriteTimeout adds to the budget: a drain
	// answers within its budget plus 5 s whatever the backends do (it
	// starts only jobs whose timeout fits, and waits a bounded time for
	// their outcomes), and the rest is for sending the answer.
	drainWriteMargin = 15 * time.Second
	// DefaultBodyLimit caps request bodies: 1 MiB.
	DefaultBodyLimit = 1 << 20
	// DefaultBatchBodyLimit caps the body of POST /api/jobs/batch: 16 MiB,
	// room for jobs.MaxBatchSize jobs of 16 KiB each.
	DefaultBatchBodyLimit = 16 << 20
	// DefaultRequestTimeout bounds each /api/jobs request.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultReadyTimeout bounds the dependency checks of /readyz.
	DefaultReadyTimeout = 2 * time.Second
)

// WorkerAuthLimiter counts failed worker authentications per client. It is
// asked only about calls whose credentials were refused.
type WorkerAuthLimiter interface {
	// Blocked reports whether client is over the failure limit, and how
	// long until it is not.
	Blocked(ctx context.Context, client string) (bool, time.Duration, error)
	// Fail counts one failure for client.
	Fail(ctx context.Context, client string) error
}

// Drainer runs one drain of the queue. *jobs.Worker implements it.
type Drainer interface {
	Drain(ctx context.Context, budget time.Duration) (jobs.DrainSummary, error)
}

var _ Drainer = (*jobs.Worker)(nil)

// ReadyFunc checks the dependencies for /readyz and returns one entry per
// dependency, nil meaning healthy. (*jobs.Service).Ready is one.
type ReadyFunc func(ctx context.Context) map[string]error

// Config wires the HTTP layer to the engine.
type Config struct {
	// Service serves the /api/jobs routes. Required.
	Service *jobs.Service
	// Worker runs the drains of POST /api/workers. Required.
	Worker Drainer
	// Verifier checks the bearer tokens of the /api/jobs routes. Required.
	Verifier auth.TokenVerifier

	// WorkerSecret, when set, lets POST /api/workers in with
	// "Authorization: Bearer <WorkerSecret>" (compared in constant time).
	WorkerSecret string
	// WorkerAuth are further ways to authenticate POST /api/workers, tried
	// in order before WorkerSecret; the first to accept lets the call in.
	// This is the seam for the QStash signature check. At least one of
	// WorkerSecret and WorkerAuth is required.
	WorkerAuth []WorkerAuthFunc

	// DrainBudget is the longest drain one call runs; ?budget= can only
	// shorten it. Defaults to DefaultDrainBudget. The server's WriteTimeout
	// must be longer: see Config.WriteTimeout.
	DrainBudget time.Duration
	// BodyLimit caps every request body, in bytes; a larger one is 413
	// request_too_large. Defaults to DefaultBodyLimit.
	BodyLimit int64
	// BatchBodyLimit caps the body of POST /api/jobs/batch instead, in
	// bytes. Defaults to DefaultBatchBodyLimit.
	BatchBodyLimit int64

	// Ready checks the dependencies for /readyz. Defaults to Service.Ready.
	Ready ReadyFunc
	// ReadyTimeout bounds Ready. Defaults to DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// CreateLimit, when set, is asked before each job creation; a refusal
	// is 429 rate_limited with Retry-After. An error lets the request
	// through (logged): a limiter outage must not stop the API.
	CreateLimit func(ctx context.Context, userID string) (allowed bool, retryAfter time.Duration, err error)
	// WorkerAuthLimit, when set, counts failed POST /api/workers
	// authentications per client address; once a client is blocked, its
	// failing calls get 429 too_many_auth_failures instead of 401. A call
	// with a valid credential is always let in, blocked or not.
	WorkerAuthLimit WorkerAuthLimiter
	// APIKeys, when set, lets service keys "jh_…" call the /api/jobs
	// routes for the user they name (X-Jobhook-User), within their scopes,
	// and serves /api/keys (create, list, revoke) to the operator.
	APIKeys APIKeys
	// AdminToken, when set, is an operator's bearer token: its requests see
	// and act on every user's jobs (creating jobs excepted).
	AdminToken string
	// Images, when set, serves generated images read-only at
	// GET /files/images/:name.
	Images *ImageFiles
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// when finding a client's address (for the worker-auth failure
	// limit). Empty: the TCP peer is the client.
	TrustedProxies []*net.IPNet
	// HSTS adds Strict-Transport-Security (production behind TLS).
	HSTS bool

	// RequestTimeout bounds each /api/jobs request: a database or Redis
	// that does not answer gives 503 service_unavailable, never a hang.
	// Defaults to DefaultRequestTimeout.
	RequestTimeout time.Duration

	// Metrics, when set, is served at GET /metrics (the Prometheus
	// exposition, promhttp). Without it /metrics is 404: internal/app
	// leaves it unset in production when no METRICS_TOKEN is set.
	Metrics http.Handler
	// MetricsToken, when set, is the bearer token GET /metrics requires.
	MetricsToken string
	// ObserveRequest, when set, is told of every request once answered.
	ObserveRequest RequestObserver

	// Logger gets one line per request and every 5xx with its cause.
	// Defaults to slog.Default().
	Logger *slog.Logger
}

// Validate reports the first missing required field, by name.
func (c Config) Validate() error {
	switch {
	case c.Service == nil:
		return errors.New("handlers: Config.Service is required")
	case c.Worker == nil:
		return errors.New("handlers: Config.Worker is required")
	case c.Verifier == nil:
		return errors.New("handlers: Config.Verifier is required")
	case c.WorkerSecret == "" && len(c.WorkerAuth) == 0:
		return errors.New("handlers: Config.WorkerSecret or Config.WorkerAuth is required, or no one could call /api/workers")
	case c.DrainBudget < 0:
		return errors.New("handlers: Config.DrainBudget cannot be negative")
	case c.BodyLimit < 0:
		return errors.New("handlers: Config.BodyLimit cannot be negative")
	case c.BatchBodyLimit < 0:
		return errors.New("handlers: Config.BatchBodyLimit cannot be negative")
	}
	return nil
}

// withDefaults fills the zero values.
func (c Config) withDefaults() Config {
	if c.DrainBudget == 0 {
		c.DrainBudget = DefaultDrainBudget
	}
	if c.BodyLimit == 0 {
		c.BodyLimit = DefaultBodyLimit
	}
	if c.BatchBodyLimit == 0 {
		c.BatchBodyLimit = DefaultBatchBodyLimit
	}
	if c.Ready == nil {
		c.Ready = c.Service.Ready
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = DefaultReadyTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// WriteTimeout is the shortest http.Server WriteTimeout that lets a drain
// of the full budget answer: the budget plus drainWriteMargin (15 s).
func (c Config) WriteTimeout() time.Duration {
	budget := c.DrainBudget
	if budget <= 0 {
		budget = DefaultDrainBudget
	}
	return budget + drainWriteMargin
}

// server holds what the handlers need.
type server struct {
	cfg        Config
	log        *slog.Logger
	workerAuth []WorkerAuthFunc
	adminToken []byte // sha256 of Config.AdminToken, nil when unset
	// metricsToken is the sha256 of Config.MetricsToken, nil when unset.
	metricsToken []byte
	// routes are the route patterns, the route labels ObserveRequest gets.
	routes map[string]bool
}

// New returns the Echo app with every route and middleware. It panics when
// cfg is invalid (see Config.Validate), a programming error caught at
// start. The caller owns e.Server: set its timeouts (ReadHeaderTimeout,
// and a WriteTimeout of at least cfg.WriteTimeout()) before starting it.
func New(cfg Config) *echo.Echo {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &server{cfg: cfg, log: cfg.Logger.With("component", "http")}
	s.workerAuth = append(s.workerAuth, cfg.WorkerAuth...)
	if cfg.AdminToken != "" {
		s.adminToken = hashToken(cfg.AdminToken)
	}
	if cfg.MetricsToken != "" {
		s.metricsToken = hashToken(cfg.MetricsToken)
	}
	if cfg.WorkerSecret != "" {
		s.workerAuth = append(s.workerAuth, BearerWorkerAuth(cfg.WorkerSecret))
	}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.IPExtractor = echo.ExtractIPDirect()
	if len(cfg.TrustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.HTTPErrorHandler = s.handleError
	// http.Server's own errors (TLS handshakes, bad requests) go to slog.
	e.StdLogger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)

	e.Use(
		s.markRoute,
		middleware.RequestID(),
		s.securityHeaders,
		s.logRequests,
		middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: s.logPanic}),
		s.limitBody,
		s.rejectOptions,
		s.checkQuery,
	)

	e.GET("/", s.home)
	e.HEAD("/", s.home)
	e.GET("/healthz", s.healthz)
	e.HEAD("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.HEAD("/readyz", s.readyz)
	e.GET("/openapi.json", s.openAPI)
	e.HEAD("/openapi.json", s.openAPI)

	e.POST("/api/jobs", s.createJob, s.requireUser, s.timeout)
	e.POST(batchRoute, s.createJobs, s.requireUser, s.timeout)
	e.GET("/api/jobs", s.listJobs, s.requireUser, s.timeout)
	e.GET("/api/jobs/stats", s.jobStats, s.requireUser, s.timeout)
	e.HEAD("/api/jobs/stats", s.jobStats, s.requireUser, s.timeout)
	e.POST("/api/jobs/retry", s.retryMatching, s.requireUser, s.timeout)
	e.HEAD("/api/jobs", s.listJobs, s.requireUser, s.timeout)
	e.GET("/api/jobs/:id", s.getJob, s.requireUser, s.timeout)
	e.HEAD("/api/jobs/:id", s.getJob, s.requireUser, s.timeout)
	e.POST("/api/jobs/:id/cancel", s.cancelJob, s.requireUser, s.timeout)
	e.POST("/api/jobs/:id/reschedule", s.rescheduleJob, s.requireUser, s.timeout)
	e.POST("/api/jobs/:id/retry", s.retryJob, s.requireUser, s.timeout)

	e.GET("/api/flow-keys", s.listFlowKeys, s.requireUser, s.timeout)
	e.HEAD("/api/flow-keys", s.listFlowKeys, s.requireUser, s.timeout)
	e.GET("/api/flow-keys/:key", s.getFlowKey, s.requireUser, s.timeout)
	e.HEAD("/api/flow-keys/:key", s.getFlowKey, s.requireUser, s.timeout)
	e.POST("/api/flow-keys/:key/pause", s.holdFlowKey, s.requireUser, s.timeout)
	e.POST("/api/flow-keys/:key/resume", s.resumeFlowKey, s.requireUser, s.timeout)
	e.GET("/api/job-types", s.listJobTypes, s.requireUser, s.timeout)
	e.HEAD("/api/job-types", s.listJobTypes, s.requireUser, s.timeout)
	e.POST("/api/job-types/:type/pause", s.holdJobType, s.requireUser, s.timeout)
	e.POST("/api/job-types/:type/resume", s.resumeJobType, s.requireUser, s.timeout)

	if s.cfg.APIKeys != nil {
		e.POST("/api/keys", s.createAPIKey, s.requireUser, s.requireOperator, s.timeout)
		e.GET("/api/keys", s.listAPIKeys, s.requireUser, s.requireOperator, s.timeout)
		e.HEAD("/api/keys", s.listAPIKeys, s.requireUser, s.requireOperator, s.timeout)
		e.POST("/api/keys/:id/revoke", s.revokeAPIKey, s.requireUser, s.requireOperator, s.timeout)
	}
	e.POST("/api/workers", s.runWorker)
	e.GET("/api/workers/jobs/:id", s.getWorkerJob, s.timeout)
	if cfg.Images != nil {
		e.GET("/files/images/:name", s.serveImage)
		e.HEAD("/files/images/:name", s.serveImage)
	}
	if cfg.Metrics != nil {
		e.GET("/metrics", s.serveMetrics)
		e.HEAD("/metrics", s.serveMetrics)
	}
	s.routes = make(map[string]bool)
	for _, r := range e.Routes() {
		s.routes[r.Path] = true
	}
	return e
}

// ImageFiles is a folder of generated images served read-only.
type ImageFiles struct {
	Dir string
	// Name is the pattern of a valid file name (no path, no dot-dot).
	Name *regexp.Regexp
}

// errNotRegular refuses a name that is not a regular file.
var errNotRegular = errors.New("not a regular file")

// serveImage serves one generated image, by a name the store made. Only a
// regular file directly inside Dir is served: a symbolic link (wherever it
// points), a directory or a device is 404 like a missing file.
//
// Range, If-Range, If-Match and If-Unmodified-Since are ignored and the
// whole image sent (RFC 9110 lets a server ignore them): http.ServeContent
// would answer a bad range or a failed precondition in plain text, and
// the images are small and immutable.
func (s *server) serveImage(c echo.Context) error {
	name := c.Param("name")
	if s.cfg.Images.Name == nil || !s.cfg.Images.Name.MatchString(name) {
		return apiError(http.StatusNotFound, CodeNotFound, "not found")
	}
	f, info, err := openRegular(s.cfg.Images.Dir, name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotRegular) {
			s.log.Warn("image not served", "name", name, "err", err)
		}
		return apiError(http.StatusNotFound, CodeNotFound, "not found")
	}
	defer f.Close()
	req := c.Request()
	for _, h := range []string{"Range", "If-Range", "If-Match", "If-Unmodified-Since"} {
		req.Header.Del(h)
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeContent(c.Response(), req, name, info.ModTime(), f)
	return nil
}

// openRegular opens dir/name for reading when it is a regular file, not
// following a symbolic link. The file opened is checked to be the one
// Lstat saw, so a link swapped in between is refused too; os.Root keeps
// every step inside dir.
func openRegular(dir, name string) (*os.File, fs.FileInfo, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open images folder: %w", err)
	}
	defer root.Close()
	seen, err := root.Lstat(name)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", name, err)
	}
	if !seen.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("image %s: %w", name, errNotRegular)
	}
	f, err := root.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", name, err)
	}
	opened, err := f.Stat()
	if err != nil || !opened.Mode().IsRegular() || !os.SameFile(seen, opened) {
		_ = f.Close()
		return nil, nil, fmt.Errorf("image %s: %w", name, errNotRegular)
	}
	return f, opened, nil
}

// securityHeaders sets the headers every response carries: no sniffing,
// no framing, no referrer, a strict content security policy (the only page
// is the small home page, styled inline), no caching of API answers, and
// HSTS when configured.
func (s *server) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if strings.HasPrefix(c.Request().URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		if s.cfg.HSTS {
			h.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		}
		return next(c)
	}
}

// timeout gives the request's context the RequestTimeout deadline; the
// backends honour it, and their deadline errors map to 503.
func (s *server) timeout(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// logRequests logs one line per request: method, path, route, status,
// latency, request id, response size and client IP. It never logs headers
// (Authorization in particular), query strings or bodies. It hands errors
// to the error handler itself, so the status it logs is the one sent.
func (s *server) logRequests(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		level := slog.LevelInfo
		if res.Status >= http.StatusInternalServerError {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.String("route", c.Path()),
			slog.Int("status", res.Status),
			slog.Duration("latency", time.Since(start)),
			slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
			slog.Int64("bytes", res.Size),
			slog.String("remote_ip", c.RealIP()),
		}
		if k, ok := actingKey(c); ok {
			// Which service key acted, and for whom: the record of every
			// action a key takes.
			attrs = append(attrs, slog.Int64("api_key_id", k.ID), slog.String("api_key_name", k.Name), slog.String("acting_user", userID(c)))
		}
		s.log.LogAttrs(req.Context(), level, "request", attrs...)
		s.observe(c, time.Since(start))
		return nil
	}
}

// markRoute sets the request's Pattern to its Echo route ("/api/jobs/:id")
// when it matched one: a tracing handler around the server (otelhttp)
// names the request's span by it ("GET /api/jobs/:id") and sets
// http.route. It must see the request the server handed in, so it runs
// before any middleware that replaces the request.
func (s *server) markRoute(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if route := c.Path(); s.routes[route] {
			c.Request().Pattern = route
		}
		return next(c)
	}
}

// logPanic logs a recovered panic with its stack (in the log only) and
// passes it on as an error, which the error handler turns into 500.
func (s *server) logPanic(c echo.Context, err error, stack []byte) error {
	s.log.Error("panic while serving a request",
		"err", err,
		"method", c.Request().Method,
		"path", c.Request().URL.Path,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
		"stack", string(stack),
	)
	return err
}

// rejectOptions answers OPTIONS on an existing route with 405
// method_not_allowed and its Allow header, instead of Echo's bodiless 204:
// the API has no cross-origin (CORS) support, so OPTIONS is not one of its
// methods. OPTIONS on an unknown path stays 404.
func (s *server) rejectOptions(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if c.Request().Method == http.MethodOptions && c.Get(echo.ContextKeyHeaderAllow) != nil {
			return echo.MethodNotAllowedHandler(c)
		}
		return next(c)
	}
}

// checkQuery refuses a query string that does not parse (a bad %-escape,
// a ';' separator) with 400 invalid_query. Echo would drop the bad pairs
// silently, so /api/jobs?status=%zz would list every job.
func (s *server) checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if _, err := url.ParseQuery(c.Request().URL.RawQuery); err != nil {
			return &APIError{Status: http.StatusBadRequest, Code: CodeInvalidQuery,
				Message: "the query string is malformed: a bad %-escape, or ';' between parameters (use '&')", Err: err}
		}
		return next(c)
	}
}

// batchRoute is the route of batch creates, whose bodies may be larger.
const batchRoute = "/api/jobs/batch"

// limitBody refuses a body announced as larger than BodyLimit (or
// BatchBodyLimit on the batch route) at once and caps every other one, so
// reading past the limit fails with *http.MaxBytesError (413
// request_too_large).
func (s *server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		limit := s.cfg.BodyLimit
		if c.Path() == batchRoute {
			limit = s.cfg.BatchBodyLimit
		}
		if req.ContentLength > limit {
			return errRequestTooLarge(limit)
		}
		if req.Body != nil && req.Body != http.NoBody {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
		}
		return next(c)
	}
}
