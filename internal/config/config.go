// Package config reads jobhook's settings from the environment and an
// optional .env file. Every setting is optional in development.
//
// Each command reads only the settings it uses: Load takes their names and
// validates those alone, so a release step that only migrates needs only
// DATABASE_URL, and a deploy step that only syncs schedules needs only
// QSTASH_TOKEN. Load with no names reads and validates every setting, as
// serve does.
//
// Every default is one constant: this package's Default… constants for
// the settings only the binary has, and the constants of the package that
// uses the setting for the others (jobs.DefaultJobTimeout,
// handlers.DefaultDrainBudget, …). Settings lists each setting with the
// default it shows in help texts and in README's configuration table; a
// test keeps that table equal to it.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

// Defaults of the settings that only the binary has. The others take the
// defaults of the packages that use them (see defaults).
const (
	// DefaultAppEnv is APP_ENV's default.
	DefaultAppEnv = "development"
	// DefaultPort is PORT's default.
	DefaultPort = 8080
	// DefaultMigrateOnStart is MIGRATE_ON_START's default.
	DefaultMigrateOnStart = true
	// DefaultEmbeddedQStash is EMBEDDED_QSTASH's default.
	DefaultEmbeddedQStash = true
	// DefaultCreateRatePerMinute is CREATE_RATE_PER_MINUTE's default.
	DefaultCreateRatePerMinute = 120
	// DefaultCreateBurst is CREATE_BURST's default.
	DefaultCreateBurst = 60
	// DefaultWorkerAuthFailuresPerMinute is
	// WORKER_AUTH_FAILURES_PER_MINUTE's default.
	DefaultWorkerAuthFailuresPerMinute = 20
	// DefaultInProcessInterval is INPROCESS_INTERVAL's default.
	DefaultInProcessInterval = time.Second
	// DefaultImagesDir is IMAGES_DIR's default.
	DefaultImagesDir = "data/images"
	// DefaultLogLevel is LOG_LEVEL's default.
	DefaultLogLevel = "info"
	// DefaultLogFormat is LOG_FORMAT's default.
	DefaultLogFormat = "text"
	// DefaultShutdownGrace is SHUTDOWN_GRACE's default.
	DefaultShutdownGrace = 30 * time.Second
)

// Config is every setting jobhook reads. The env tag names the variable;
// the doc tag is the one-line summary help texts show, and the shown tag,
// when present, is how the default reads when it is derived from other
// settings rather than a constant.
type Config struct {
	// AppEnv is "development" (default) or "production".
	AppEnv string `env:"APP_ENV" doc:"development, or production: refuses development secrets and embedded backends"`
	// Port is the HTTP port.
	Port int `env:"PORT" doc:"HTTP port"`
	// PublicURL is the address callers (QStash) use to reach this server:
	// an absolute http(s) URL. Defaults to http://localhost:PORT, in
	// development only.
	PublicURL string `env:"PUBLIC_URL" shown:"http://localhost:$PORT" doc:"the absolute http(s) URL callers such as QStash use to reach the server (required in production)"`

	// DatabaseURL is a Postgres URL. Empty: a SQLite file at SQLitePath.
	DatabaseURL string `env:"DATABASE_URL" doc:"Postgres URL (postgres://…); unset: SQLite at SQLITE_PATH"`
	// SQLitePath is the embedded default's database file.
	SQLitePath string `env:"SQLITE_PATH" doc:"the embedded default's database file"`
	// MigrateOnStart applies pending migrations when serve starts.
	MigrateOnStart bool `env:"MIGRATE_ON_START" doc:"apply pending migrations when serve starts"`

	// RedisURL is redis:// or rediss:// (TLS, as Upstash). Empty: an
	// in-process Redis.
	RedisURL string `env:"REDIS_URL" doc:"redis:// or rediss:// URL; unset: an in-process Redis"`
	// RedisPrefix prefixes every Redis key.
	RedisPrefix string `env:"REDIS_PREFIX" doc:"prefix of every Redis key"`

	// QStashToken is the QStash API token. When set, jobhook publishes to
	// the QStash at QStashURL; when not, to the in-process QStash (unless
	// EmbeddedQStash is false).
	QStashToken string `env:"QSTASH_TOKEN" doc:"the QStash API token; unset: the embedded QStash"`
	// QStashURL is the QStash API.
	QStashURL string `env:"QSTASH_URL" doc:"the QStash API (an absolute http(s) URL)"`
	// EmbeddedQStash runs the in-process QStash when QSTASH_TOKEN is not
	// set: it delivers schedules, delayed messages and triggers to this
	// server's /api/workers with signed HTTP calls.
	EmbeddedQStash bool `env:"EMBEDDED_QSTASH" doc:"run the in-process QStash when QSTASH_TOKEN is unset"`
	// SchedulesFile is the schedules file; the embedded QStash runs it
	// (the committed default when the file is missing) and
	// `jobhook schedules sync` makes QStash match it.
	SchedulesFile string `env:"SCHEDULES_FILE" doc:"the schedules file"`
	// TriggerWindow is the debounce window of the trigger published after
	// each create of a job that is due now.
	TriggerWindow time.Duration `env:"TRIGGER_WINDOW" doc:"debounce window of the trigger published after a create"`

	// QStashCurrentSigningKey and QStashNextSigningKey verify the
	// Upstash-Signature of calls to POST /api/workers. With neither set,
	// only the bearer WORKER_SECRET is accepted.
	QStashCurrentSigningKey string `env:"QSTASH_CURRENT_SIGNING_KEY" doc:"verifies QStash's signed calls to /api/workers"`
	QStashNextSigningKey    string `env:"QSTASH_NEXT_SIGNING_KEY" doc:"verifies QStash's signed calls after a key rotation"`
	// WorkerURL is the exact URL QStash calls, compared with the token's
	// sub: an absolute http(s) URL. Defaults to PUBLIC_URL + "/api/workers".
	WorkerURL string `env:"QSTASH_WORKER_URL" shown:"$PUBLIC_URL/api/workers" doc:"the exact URL QStash calls (an absolute http(s) URL)"`

	// WorkerSecret authenticates POST /api/workers as a bearer token.
	WorkerSecret string `env:"WORKER_SECRET" shown:"development default" doc:"bearer secret of /api/workers (required in production)"`
	// AuthJWTSecret verifies HS256 user tokens (development, or apps that
	// mint their own). Defaults, in development only, to a public secret.
	AuthJWTSecret string `env:"AUTH_JWT_SECRET" shown:"development default" doc:"HS256 secret of user tokens"`
	// AuthJWKSURL verifies RS256/ES256 user tokens against a JWKS, such as
	// Clerk's https://<frontend-api>/.well-known/jwks.json.
	AuthJWKSURL string `env:"AUTH_JWKS_URL" doc:"JWKS for RS256/ES256 user tokens"`
	// AuthIssuer, when set, must equal the token's iss.
	AuthIssuer string `env:"AUTH_ISSUER" doc:"required iss of user tokens"`
	// AuthAudience, when set, must contain one of the token's aud values.
	AuthAudience []string `env:"AUTH_AUDIENCE" envSeparator:"," doc:"accepted aud values of user tokens (comma list)"`
	// AuthAuthorizedParties, when set, must contain a token's azp when it
	// has one (Clerk's check for the requesting origin).
	AuthAuthorizedParties []string `env:"AUTH_AUTHORIZED_PARTIES" envSeparator:"," doc:"accepted azp values of user tokens (comma list)"`
	// AuthJWKSMinRefresh is the least time between two JWKS fetches caused
	// by tokens with an unknown kid: a key the issuer publishes is
	// accepted within it. At least 1s.
	AuthJWKSMinRefresh time.Duration `env:"AUTH_JWKS_MIN_REFRESH" doc:"least time between two JWKS fetches for unknown kids; a rotated key is accepted within it"`
	// AdminToken, when set, is a bearer token for operators, who may see
	// and act on every user's jobs. At least 32 bytes.
	AdminToken string `env:"ADMIN_TOKEN" doc:"operator bearer token (at least 32 bytes)"`
	// MetricsToken, when set, is the bearer token GET /metrics requires.
	// Without it /metrics is open in development and off (404) in
	// production. At least 32 bytes.
	MetricsToken string `env:"METRICS_TOKEN" doc:"bearer token of GET /metrics (at least 32 bytes); unset: open in development, 404 in production"`
	// MetricsAddr, when set, is a host:port (such as 127.0.0.1:9090 or
	// :9090) where serve runs a second HTTP server for GET /metrics alone
	// (behind METRICS_TOKEN when set, open otherwise); the public API then
	// answers /metrics 404.
	MetricsAddr string `env:"METRICS_ADDR" doc:"host:port of a separate listener for GET /metrics (such as 127.0.0.1:9090); the public API then has no /metrics"`
	// JobsEncryptionKey encrypts secret payload fields at rest:
	// comma-separated kid:base64key entries, the first encrypts.
	JobsEncryptionKey string `env:"JOBS_ENCRYPTION_KEY" doc:"kid:base64key[,…] encrypting secret payload fields"`

	// CreateRatePerMinute and CreateBurst limit job creation per user
	// (a token bucket in Redis, shared by every instance).
	CreateRatePerMinute int `env:"CREATE_RATE_PER_MINUTE" doc:"job creations per user and minute"`
	CreateBurst         int `env:"CREATE_BURST" doc:"burst of job creations per user"`
	// WorkerAuthFailuresPerMinute limits failed POST /api/workers
	// authentications per client address.
	WorkerAuthFailuresPerMinute int `env:"WORKER_AUTH_FAILURES_PER_MINUTE" doc:"failed /api/workers authentications per client address and minute"`

	// TrustedProxies are CIDRs of the proxies in front of jobhook whose
	// X-Forwarded-For is believed (e.g. 10.0.0.0/8). Empty: none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:"," doc:"CIDRs of proxies whose X-Forwarded-For is believed"`

	// Warnings lists the settings that production would refuse, for serve
	// to log in development.
	Warnings []string `env:"-"`
	// authJWTSecretSet records whether AUTH_JWT_SECRET was given.
	authJWTSecretSet bool
	// publicURLSet, workerURLSet and imagesBaseURLSet record whether
	// PUBLIC_URL, QSTASH_WORKER_URL and IMAGES_BASE_URL were given.
	publicURLSet, workerURLSet, imagesBaseURLSet bool

	// WorkerConcurrency is how many jobs one drain runs at once.
	WorkerConcurrency int `env:"WORKER_CONCURRENCY" doc:"jobs one drain runs at once"`
	// JobTimeout bounds a job whose type sets no timeout of its own.
	JobTimeout time.Duration `env:"JOB_TIMEOUT" doc:"timeout of a job whose type sets none"`
	// DrainBudget bounds one drain: it starts a job only if the job's
	// timeout fits in the rest of the budget, so it must exceed every job
	// type's timeout (serve refuses to start otherwise). A drain answers
	// within the budget plus 5 s: keep it under the platform's limit on
	// one request (QStash's "Max HTTP Response Duration") by 15 s or more.
	DrainBudget time.Duration `env:"DRAIN_BUDGET" doc:"longest drain of one /api/workers call"`
	// LeaseDuration is a claimed job's lease, renewed by a heartbeat while
	// it runs: a dead worker's jobs are back in the queue within it.
	LeaseDuration time.Duration `env:"LEASE_DURATION" doc:"a claimed job's lease, renewed while it runs"`
	// FlowLimits sets the limits of flow keys by key prefix, over the job
	// types' defaults (one publish at a time per Instagram account and
	// Facebook Page, two fetches at a time per web host):
	// "prefix=concurrency [rate/interval]; …", such as "ig:=1; host:=4
	// 60/1m; openai:=0 500/1m" (see jobs.ParseFlowLimits).
	FlowLimits string `env:"FLOW_LIMITS" doc:"limits per flow key prefix: \"ig:=1; host:=2 60/1m\""`
	// RetentionCompleted is how long completed jobs are kept after they
	// finished, RetentionFailed how long failed and cancelled ones are;
	// 0 keeps them forever. The reconcile pass deletes them in small
	// batches, each top-level job with its children and history.
	RetentionCompleted time.Duration `env:"RETENTION_COMPLETED" doc:"how long completed jobs are kept (0: forever)"`
	RetentionFailed    time.Duration `env:"RETENTION_FAILED" doc:"how long failed and cancelled jobs are kept (0: forever)"`
	// MaxPayloadBytes limits a job's payload.
	MaxPayloadBytes int `env:"MAX_PAYLOAD_BYTES" doc:"largest job payload"`
	// BodyLimitBytes limits a request body.
	BodyLimitBytes int64 `env:"BODY_LIMIT_BYTES" doc:"largest request body"`
	// BatchBodyLimitBytes limits the body of POST /api/jobs/batch.
	BatchBodyLimitBytes int64 `env:"BATCH_BODY_LIMIT_BYTES" doc:"largest POST /api/jobs/batch body"`

	// InProcessWorker also runs drains inside serve: right after each
	// create, and every InProcessInterval, for deployments that are not
	// serverless. Off by default: QStash (real or embedded) calls
	// POST /api/workers.
	InProcessWorker bool `env:"INPROCESS_WORKER" doc:"also drain inside serve (deployments that are not serverless)"`
	// InProcessInterval is how often the in-process worker drains unasked
	// (retries and scheduled jobs that fell due).
	InProcessInterval time.Duration `env:"INPROCESS_INTERVAL" doc:"how often the in-process worker drains unasked"`

	// ScrapeAllowPrivate lets web_scraping reach private, loopback and
	// link-local addresses and any port (tests and local use only; refused
	// in production).
	ScrapeAllowPrivate bool `env:"SCRAPE_ALLOW_PRIVATE" doc:"let web_scraping reach private and loopback addresses and any port (refused in production)"`

	// OpenAIBaseURL, OpenAIAPIKey, OpenAITextModel and OpenAIImageModel
	// configure the AI job types (any OpenAI-compatible API).
	OpenAIBaseURL    string `env:"OPENAI_BASE_URL" doc:"the AI job types' OpenAI-compatible API"`
	OpenAIAPIKey     string `env:"OPENAI_API_KEY" doc:"the AI job types' API key"`
	OpenAITextModel  string `env:"OPENAI_TEXT_MODEL" doc:"default text model"`
	OpenAIImageModel string `env:"OPENAI_IMAGE_MODEL" doc:"default image model"`
	// ImagesDir keeps generated images returned as base64; they are served
	// at ImagesBaseURL (default PUBLIC_URL + "/files/images").
	ImagesDir     string `env:"IMAGES_DIR" doc:"where generated images are kept"`
	ImagesBaseURL string `env:"IMAGES_BASE_URL" shown:"$PUBLIC_URL/files/images" doc:"the absolute URL generated images are served at"`
	// GraphAPIBaseURL and GraphAPIVersion configure the Instagram and
	// Facebook publishing types.
	GraphAPIBaseURL string `env:"GRAPH_API_BASE_URL" doc:"the Instagram and Facebook Graph API"`
	GraphAPIVersion string `env:"GRAPH_API_VERSION" doc:"the Graph API version"`

	// ChaosTasks registers the test-only job type chaos_record, which the
	// chaos suite uses to record every handler call. Only a binary built
	// with -tags chaos has it; others refuse to start with it. Never in
	// production.
	ChaosTasks bool `env:"JOBHOOK_CHAOS_TASKS" doc:"register the test job type chaos_record (binaries built with -tags chaos; refused in production)"`

	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" doc:"debug, info, warn or error"`
	// LogFormat is text or json.
	LogFormat string `env:"LOG_FORMAT" doc:"text or json"`
	// ShutdownGrace is how long serve lets running jobs finish on
	// SIGTERM or SIGINT.
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" doc:"how long serve lets running jobs finish on SIGTERM/SIGINT"`
}

// defaults is the Config before the environment is read: every default,
// each from its one constant.
func defaults() Config {
	return Config{
		AppEnv:                      DefaultAppEnv,
		Port:                        DefaultPort,
		SQLitePath:                  database.DefaultSQLitePath,
		MigrateOnStart:              DefaultMigrateOnStart,
		RedisPrefix:                 jobs.DefaultPrefix,
		QStashURL:                   qstashclient.DefaultBaseURL,
		EmbeddedQStash:              DefaultEmbeddedQStash,
		SchedulesFile:               schedules.DefaultFile,
		TriggerWindow:               jobs.DefaultTriggerWindow,
		CreateRatePerMinute:         DefaultCreateRatePerMinute,
		CreateBurst:                 DefaultCreateBurst,
		WorkerAuthFailuresPerMinute: DefaultWorkerAuthFailuresPerMinute,
		WorkerConcurrency:           jobs.DefaultConcurrency,
		JobTimeout:                  jobs.DefaultJobTimeout,
		DrainBudget:                 handlers.DefaultDrainBudget,
		RetentionCompleted:          jobs.DefaultRetentionCompleted,
		RetentionFailed:             jobs.DefaultRetentionFailed,
		LeaseDuration:               jobs.DefaultLeaseDuration,
		MaxPayloadBytes:             jobs.DefaultMaxPayloadBytes,
		BodyLimitBytes:              handlers.DefaultBodyLimit,
		BatchBodyLimitBytes:         handlers.DefaultBatchBodyLimit,
		InProcessInterval:           DefaultInProcessInterval,
		OpenAIBaseURL:               tasks.OpenAIBaseURLDefault,
		OpenAITextModel:             tasks.OpenAITextModelDefault,
		OpenAIImageModel:            tasks.OpenAIImageModelDefault,
		ImagesDir:                   DefaultImagesDir,
		GraphAPIBaseURL:             tasks.GraphBaseURLDefault,
		GraphAPIVersion:             tasks.GraphVersionDefault,
		LogLevel:                    DefaultLogLevel,
		LogFormat:                   DefaultLogFormat,
		ShutdownGrace:               DefaultShutdownGrace,
		AuthJWKSMinRefresh:          auth.DefaultRefreshRateLimit,
	}
}

// Load reads .env (when present; it never overrides variables already
// set) and then the environment, applies defaults and validates the
// settings named, or every setting when none is named. See FromEnv.
func Load(names ...string) (*Config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config: read .env: %w", err)
	}
	return FromEnv(names...)
}

// FromEnv reads the environment only. It validates the settings named
// (environment variable names such as "DATABASE_URL"), or every setting
// when none is named: a value that does not parse, and every check that
// reads only named settings, including the production refusals when
// APP_ENV is named. Settings not named keep their defaults' derivations
// but are not checked. The error is an *Error listing every problem.
func FromEnv(names ...string) (*Config, error) {
	use, err := selection(names)
	if err != nil {
		return nil, err
	}
	cfg := defaults()
	var problems []string
	if err := env.Parse(&cfg); err != nil {
		problems = append(problems, parseProblems(err, use)...)
	}
	cfg.derive()
	problems = append(problems, cfg.check(use)...)
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return &cfg, nil
}

// Error lists every problem found in the settings. Its text has one
// problem per line when there are several.
type Error struct {
	// Problems are the problems, each naming its setting.
	Problems []string
}

// Error returns "config: <problem>", or a count and one problem per line.
func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.Problems[0]
	}
	return fmt.Sprintf("config: %d problems:\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// selection returns the set of settings to validate: those named, or all.
func selection(names []string) (map[string]bool, error) {
	use := map[string]bool{}
	known := map[string]bool{}
	for _, s := range Settings() {
		known[s.Name] = true
	}
	if len(names) == 0 {
		return known, nil
	}
	for _, n := range names {
		if !known[n] {
			return nil, fmt.Errorf("config: %q is not a setting", n)
		}
		use[n] = true
	}
	return use, nil
}

// derive fills the defaults that depend on other settings.
func (c *Config) derive() {
	c.AppEnv = strings.ToLower(strings.TrimSpace(c.AppEnv))
	c.publicURLSet = c.PublicURL != ""
	if !c.publicURLSet {
		c.PublicURL = fmt.Sprintf("http://localhost:%d", c.Port)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	c.workerURLSet = c.WorkerURL != ""
	if !c.workerURLSet {
		c.WorkerURL = c.PublicURL + "/api/workers"
	}
	c.imagesBaseURLSet = c.ImagesBaseURL != ""
	if !c.imagesBaseURLSet {
		c.ImagesBaseURL = c.PublicURL + "/files/images"
	}
	c.ImagesBaseURL = strings.TrimRight(c.ImagesBaseURL, "/")
	if c.WorkerSecret == "" {
		c.WorkerSecret = auth.DevWorkerSecret
	}
	c.authJWTSecretSet = c.AuthJWTSecret != ""
	if c.AuthJWTSecret == "" && c.AuthJWKSURL == "" {
		c.AuthJWTSecret = auth.DevJWTSecret
	}
}

// rule is one check of the settings. It runs when every setting it reads
// is validated; a production rule also needs APP_ENV validated and is a
// warning (Config.Warnings) in development.
type rule struct {
	reads      []string
	production bool
	// check returns the problem, or "" when there is none.
	check func(c *Config) string
}

// rules are every check, in the order their problems are listed.
var rules = []rule{
	{reads: []string{"APP_ENV"}, check: func(c *Config) string {
		if c.AppEnv != "development" && c.AppEnv != "production" {
			return fmt.Sprintf("APP_ENV must be development or production, not %q", c.AppEnv)
		}
		return ""
	}},
	{reads: []string{"PORT"}, check: func(c *Config) string {
		if c.Port < 1 || c.Port > 65535 {
			return fmt.Sprintf("PORT must be 1–65535, not %d", c.Port)
		}
		return ""
	}},
	{reads: []string{"PUBLIC_URL"}, check: func(c *Config) string {
		return checkHTTPURL("PUBLIC_URL", c.PublicURL, c.publicURLSet)
	}},
	{reads: []string{"QSTASH_WORKER_URL"}, check: func(c *Config) string {
		return checkHTTPURL("QSTASH_WORKER_URL", c.WorkerURL, c.workerURLSet)
	}},
	{reads: []string{"QSTASH_URL"}, check: func(c *Config) string {
		return checkHTTPURL("QSTASH_URL", c.QStashURL, true)
	}},
	{reads: []string{"IMAGES_BASE_URL"}, check: func(c *Config) string {
		return checkHTTPURL("IMAGES_BASE_URL", c.ImagesBaseURL, c.imagesBaseURLSet)
	}},
	{reads: []string{"CREATE_RATE_PER_MINUTE", "CREATE_BURST"}, check: func(c *Config) string {
		if c.CreateRatePerMinute < 1 || c.CreateBurst < 1 {
			return "CREATE_RATE_PER_MINUTE and CREATE_BURST must be at least 1"
		}
		return ""
	}},
	{reads: []string{"WORKER_AUTH_FAILURES_PER_MINUTE"}, check: func(c *Config) string {
		if c.WorkerAuthFailuresPerMinute < 1 {
			return "WORKER_AUTH_FAILURES_PER_MINUTE must be at least 1"
		}
		return ""
	}},
	{reads: []string{"JOBS_ENCRYPTION_KEY"}, check: func(c *Config) string {
		if c.JobsEncryptionKey != "" {
			if _, err := secretbox.ParseKeyring(c.JobsEncryptionKey); err != nil {
				return "JOBS_ENCRYPTION_KEY: " + err.Error()
			}
		}
		return ""
	}},
	{reads: []string{"TRUSTED_PROXIES"}, check: func(c *Config) string {
		for _, cidr := range c.TrustedProxies {
			if _, _, err := net.ParseCIDR(strings.TrimSpace(cidr)); err != nil {
				return fmt.Sprintf("TRUSTED_PROXIES: %q is not a CIDR such as 10.0.0.0/8", cidr)
			}
		}
		return ""
	}},
	{reads: []string{"RETENTION_COMPLETED", "RETENTION_FAILED"}, check: func(c *Config) string {
		if c.RetentionCompleted < 0 || c.RetentionFailed < 0 {
			return "RETENTION_COMPLETED and RETENTION_FAILED must not be negative (0 keeps jobs forever)"
		}
		return ""
	}},
	{reads: []string{"FLOW_LIMITS"}, check: func(c *Config) string {
		if _, err := jobs.ParseFlowLimits(c.FlowLimits); err != nil {
			return "FLOW_LIMITS: " + err.Error()
		}
		return ""
	}},
	{reads: []string{"AUTH_JWKS_MIN_REFRESH"}, check: func(c *Config) string {
		if c.AuthJWKSMinRefresh < time.Second {
			return "AUTH_JWKS_MIN_REFRESH must be at least 1s"
		}
		return ""
	}},
	{reads: []string{"ADMIN_TOKEN"}, check: func(c *Config) string {
		if c.AdminToken != "" && len(c.AdminToken) < 32 {
			return "ADMIN_TOKEN must be at least 32 bytes"
		}
		return ""
	}},
	{reads: []string{"METRICS_TOKEN"}, check: func(c *Config) string {
		if c.MetricsToken != "" && len(c.MetricsToken) < 32 {
			return "METRICS_TOKEN must be at least 32 bytes"
		}
		return ""
	}},
	{reads: []string{"METRICS_ADDR", "PORT"}, check: func(c *Config) string {
		return checkMetricsAddr(c.MetricsAddr, c.Port)
	}},
	{reads: []string{"WORKER_CONCURRENCY"}, check: func(c *Config) string {
		if c.WorkerConcurrency < 1 || c.WorkerConcurrency > 1000 {
			return fmt.Sprintf("WORKER_CONCURRENCY must be 1–1000, not %d", c.WorkerConcurrency)
		}
		return ""
	}},
	{reads: []string{"JOB_TIMEOUT"}, check: func(c *Config) string {
		if c.JobTimeout <= 0 {
			return "JOB_TIMEOUT must be positive"
		}
		return ""
	}},
	{reads: []string{"LEASE_DURATION"}, check: func(c *Config) string {
		if c.LeaseDuration < 300*time.Millisecond {
			return "LEASE_DURATION must be at least 300ms"
		}
		return ""
	}},
	{reads: []string{"DRAIN_BUDGET"}, check: func(c *Config) string {
		if c.DrainBudget <= 0 {
			return "DRAIN_BUDGET must be positive"
		}
		return ""
	}},
	{reads: []string{"DRAIN_BUDGET", "JOB_TIMEOUT"}, check: func(c *Config) string {
		if c.DrainBudget > 0 && c.JobTimeout > 0 && c.DrainBudget <= c.JobTimeout {
			return fmt.Sprintf("DRAIN_BUDGET (%s) must be longer than JOB_TIMEOUT (%s): a drain starts a job only if its timeout fits in the rest of the budget, so such jobs would never run",
				FormatDuration(c.DrainBudget), FormatDuration(c.JobTimeout))
		}
		return ""
	}},
	{reads: []string{"MAX_PAYLOAD_BYTES"}, check: func(c *Config) string {
		if c.MaxPayloadBytes < 1 {
			return "MAX_PAYLOAD_BYTES must be positive"
		}
		return ""
	}},
	{reads: []string{"BODY_LIMIT_BYTES", "MAX_PAYLOAD_BYTES"}, check: func(c *Config) string {
		if c.BodyLimitBytes < int64(c.MaxPayloadBytes) {
			return "BODY_LIMIT_BYTES must be at least MAX_PAYLOAD_BYTES"
		}
		return ""
	}},
	{reads: []string{"BATCH_BODY_LIMIT_BYTES", "MAX_PAYLOAD_BYTES"}, check: func(c *Config) string {
		if c.BatchBodyLimitBytes < int64(c.MaxPayloadBytes) {
			return "BATCH_BODY_LIMIT_BYTES must be at least MAX_PAYLOAD_BYTES"
		}
		return ""
	}},
	{reads: []string{"TRIGGER_WINDOW"}, check: func(c *Config) string {
		if c.TriggerWindow < time.Second {
			return "TRIGGER_WINDOW must be at least 1s"
		}
		return ""
	}},
	// Only serve verifies QStash's calls: schedules sync, which talks to
	// the QStash API with the token alone, does not read the keys.
	{reads: []string{"QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"}, check: func(c *Config) string {
		if c.QStashToken != "" && c.QStashCurrentSigningKey == "" && c.QStashNextSigningKey == "" {
			return "QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY are not: QStash's calls could not be verified"
		}
		return ""
	}},
	{reads: []string{"INPROCESS_INTERVAL"}, check: func(c *Config) string {
		if c.InProcessInterval <= 0 {
			return "INPROCESS_INTERVAL must be positive"
		}
		return ""
	}},
	{reads: []string{"LOG_LEVEL"}, check: func(c *Config) string {
		if _, err := ParseLevel(c.LogLevel); err != nil {
			return err.Error()
		}
		return ""
	}},
	{reads: []string{"LOG_FORMAT"}, check: func(c *Config) string {
		if c.LogFormat != "text" && c.LogFormat != "json" {
			return fmt.Sprintf("LOG_FORMAT must be text or json, not %q", c.LogFormat)
		}
		return ""
	}},

	// What production refuses: public development secrets, weak secrets,
	// no way to verify QStash or users, the embedded backends, test and
	// local settings.
	{reads: []string{"WORKER_SECRET"}, production: true, check: func(c *Config) string {
		switch {
		case c.WorkerSecret == auth.DevWorkerSecret:
			return "WORKER_SECRET is the public development default; set a random secret of at least 32 bytes"
		case len(c.WorkerSecret) < 32:
			return "WORKER_SECRET is shorter than 32 bytes"
		}
		return ""
	}},
	{reads: []string{"QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY"}, production: true, check: func(c *Config) string {
		if c.QStashCurrentSigningKey == "" && c.QStashNextSigningKey == "" {
			return "no QStash signing keys: set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY"
		}
		return ""
	}},
	{reads: []string{"AUTH_JWKS_URL", "AUTH_JWT_SECRET"}, production: true, check: func(c *Config) string {
		switch {
		case c.AuthJWKSURL == "" && !c.authJWTSecretSet:
			return "no user authentication configured: set AUTH_JWKS_URL (or AUTH_JWT_SECRET); the development secret is public"
		case c.authJWTSecretSet && len(c.AuthJWTSecret) < 32:
			return "AUTH_JWT_SECRET is shorter than 32 bytes"
		}
		return ""
	}},
	{reads: []string{"DATABASE_URL"}, production: true, check: func(c *Config) string {
		if c.DatabaseURL == "" {
			return "DATABASE_URL is not set: the SQLite file is for development"
		}
		return ""
	}},
	{reads: []string{"REDIS_URL"}, production: true, check: func(c *Config) string {
		if c.RedisURL == "" {
			return "REDIS_URL is not set: the in-process Redis is for development"
		}
		return ""
	}},
	{reads: []string{"QSTASH_TOKEN"}, production: true, check: func(c *Config) string {
		if c.QStashToken == "" {
			return "QSTASH_TOKEN is not set: the in-process QStash is for development"
		}
		return ""
	}},
	{reads: []string{"PUBLIC_URL"}, production: true, check: func(c *Config) string {
		if !c.publicURLSet {
			return "PUBLIC_URL is not set: QStash would be told to call " + c.PublicURL
		}
		return ""
	}},
	{reads: []string{"SCRAPE_ALLOW_PRIVATE"}, production: true, check: func(c *Config) string {
		if c.ScrapeAllowPrivate {
			return "SCRAPE_ALLOW_PRIVATE=true lets any user's web_scraping job reach private and loopback addresses"
		}
		return ""
	}},
	{reads: []string{"JOBHOOK_CHAOS_TASKS"}, production: true, check: func(c *Config) string {
		if c.ChaosTasks {
			return "JOBHOOK_CHAOS_TASKS is a test setting"
		}
		return ""
	}},
}

// check runs the rules whose settings are all in use. It returns the
// problems; production rules found in development become Warnings.
func (c *Config) check(use map[string]bool) []string {
	var problems []string
	c.Warnings = nil
	for _, r := range rules {
		if !all(use, r.reads) || (r.production && !use["APP_ENV"]) {
			continue
		}
		p := r.check(c)
		switch {
		case p == "":
		case !r.production || c.Production():
			problems = append(problems, p)
		case c.AppEnv == "development":
			c.Warnings = append(c.Warnings, p)
		}
	}
	return problems
}

func all(use map[string]bool, names []string) bool {
	for _, n := range names {
		if !use[n] {
			return false
		}
	}
	return true
}

// checkHTTPURL returns the problem with a URL setting that must be an
// absolute http or https URL, or "".
func checkHTTPURL(name, value string, set bool) string {
	u, err := url.Parse(value)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == "" {
		return ""
	}
	if !set {
		// A derived value is only wrong because of the setting it came
		// from, which has its own check.
		return ""
	}
	return fmt.Sprintf("%s must be an absolute http(s) URL such as https://jobs.example.com, not %q", name, value)
}

// checkMetricsAddr returns the problem with METRICS_ADDR, or "": it must
// be host:port with a port of 1–65535, and not the API's PORT on every
// interface.
func checkMetricsAddr(addr string, port int) string {
	if addr == "" {
		return ""
	}
	host, p, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(p)
	switch {
	case err != nil || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(host, " /"):
		return fmt.Sprintf("METRICS_ADDR must be host:port with a port of 1–65535, such as 127.0.0.1:9090 or :9090, not %q", addr)
	case n == port && (host == "" || host == "0.0.0.0" || host == "::"):
		return fmt.Sprintf("METRICS_ADDR %q uses PORT (%d), where the API listens: choose another port", addr, port)
	}
	return ""
}

// parseProblems names the variable behind each value that did not parse,
// e.g. `JOB_TIMEOUT: "soon" is not a duration such as 30s or 5m`, for the
// settings in use.
func parseProblems(err error, use map[string]bool) []string {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return []string{err.Error()}
	}
	var parts []string
	t := reflect.TypeOf(Config{})
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			parts = append(parts, e.Error())
			continue
		}
		name := pe.Name
		if f, ok := t.FieldByName(pe.Name); ok {
			name, _, _ = strings.Cut(f.Tag.Get("env"), ",")
		}
		if !use[name] {
			continue
		}
		want := "a valid " + pe.Type.String()
		switch pe.Type.String() {
		case "time.Duration":
			want = "a duration such as 30s or 5m"
		case "int", "int64":
			want = "a whole number"
		case "bool":
			want = "true or false"
		}
		parts = append(parts, fmt.Sprintf("%s must be %s, not %q", name, want, os.Getenv(name)))
	}
	return parts
}

// QStashMode says where QStash messages go: "remote" (QSTASH_TOKEN set),
// "embedded" (the in-process QStash) or "off".
func (c *Config) QStashMode() string {
	switch {
	case c.QStashToken != "":
		return "remote"
	case c.EmbeddedQStash:
		return "embedded"
	default:
		return "off"
	}
}

// Retention returns RETENTION_COMPLETED and RETENTION_FAILED as the
// engine takes them: 0 (forever) is negative there.
func (c *Config) Retention() (completed, failed time.Duration) {
	forever := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	return forever(c.RetentionCompleted), forever(c.RetentionFailed)
}

// FlowLimitList parses FLOW_LIMITS (validated at load).
func (c *Config) FlowLimitList() []jobs.FlowLimit {
	l, _ := jobs.ParseFlowLimits(c.FlowLimits)
	return l
}

// TrustedProxyNets parses TRUSTED_PROXIES (validated at load).
func (c *Config) TrustedProxyNets() []*net.IPNet {
	var out []*net.IPNet
	for _, cidr := range c.TrustedProxies {
		if _, n, err := net.ParseCIDR(strings.TrimSpace(cidr)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Production reports whether APP_ENV is production.
func (c *Config) Production() bool { return c.AppEnv == "production" }

// ParseLevel reads a LOG_LEVEL.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, not %q", s)
	}
	return l, nil
}

// Setting describes one environment variable.
type Setting struct {
	// Name is the variable, such as "PORT".
	Name string
	// Default is the default as help texts and README show it: the value
	// ("8080", "2m", "true"), a derivation ("$PUBLIC_URL/api/workers"),
	// or "" when there is none.
	Default string
	// Summary is one line saying what it does.
	Summary string
}

// Settings lists every setting in the order of Config's fields, with its
// default taken from the same constants Load applies.
func Settings() []Setting {
	d := reflect.ValueOf(defaults())
	t := d.Type()
	var out []Setting
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" || name == "-" {
			continue
		}
		def, ok := f.Tag.Lookup("shown")
		if !ok {
			def = formatDefault(d.Field(i))
		}
		out = append(out, Setting{Name: name, Default: def, Summary: f.Tag.Get("doc")})
	}
	return out
}

// Lookup returns the setting named, and whether there is one.
func Lookup(name string) (Setting, bool) {
	all := Settings()
	i := slices.IndexFunc(all, func(s Setting) bool { return s.Name == name })
	if i < 0 {
		return Setting{}, false
	}
	return all[i], true
}

// formatDefault writes a default as a person would set it: 8080, true,
// 2m, 30s, 1h30m; "" for none (an empty string or slice, or false).
func formatDefault(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return FormatDuration(d)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		if v.Bool() {
			return "true"
		}
		return "false"
	case reflect.Int, reflect.Int64:
		return fmt.Sprint(v.Int())
	case reflect.Slice:
		return ""
	}
	return fmt.Sprint(v.Interface())
}

// FormatDuration writes d without zero units: 2m, not 2m0s; 1h30m; 30s;
// 300ms.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
