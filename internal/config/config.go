// Package config reads jobhook's settings from the environment and an
// optional .env file. Every setting is optional in development.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/joho/godotenv"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/secretbox"
)

// Config is every setting jobhook reads. The env tag names the variable.
type Config struct {
	// AppEnv is "development" (default) or "production".
	AppEnv string `env:"APP_ENV" envDefault:"development"`
	// Port is the HTTP port. Defaults to 8080.
	Port int `env:"PORT" envDefault:"8080"`
	// PublicURL is the address callers (QStash) use to reach this server.
	// Defaults to http://localhost:PORT.
	PublicURL string `env:"PUBLIC_URL"`

	// DatabaseURL is a Postgres URL. Empty: a SQLite file at SQLitePath.
	DatabaseURL string `env:"DATABASE_URL"`
	// SQLitePath is the embedded default's database file.
	SQLitePath string `env:"SQLITE_PATH" envDefault:"data/jobhook.db"`
	// MigrateOnStart applies pending migrations when serve starts.
	MigrateOnStart bool `env:"MIGRATE_ON_START" envDefault:"true"`

	// RedisURL is redis:// or rediss:// (TLS, as Upstash). Empty: an
	// in-process Redis.
	RedisURL string `env:"REDIS_URL"`
	// RedisPrefix prefixes every Redis key.
	RedisPrefix string `env:"REDIS_PREFIX" envDefault:"jobs:"`

	// QStashToken is the QStash API token. When set, jobhook publishes to
	// the QStash at QStashURL; when not, to the in-process QStash (unless
	// EmbeddedQStash is false).
	QStashToken string `env:"QSTASH_TOKEN"`
	// QStashURL is the QStash API. Defaults to https://qstash.upstash.io.
	QStashURL string `env:"QSTASH_URL" envDefault:"https://qstash.upstash.io"`
	// EmbeddedQStash runs the in-process QStash when QSTASH_TOKEN is not
	// set: it delivers schedules, delayed messages and triggers to this
	// server's /api/workers with signed HTTP calls.
	EmbeddedQStash bool `env:"EMBEDDED_QSTASH" envDefault:"true"`
	// SchedulesFile is the schedules file; the embedded QStash runs it
	// (the committed default when the file is missing) and
	// `jobhook schedules sync` makes QStash match it.
	SchedulesFile string `env:"SCHEDULES_FILE" envDefault:"qstash.schedules.json"`
	// TriggerWindow is the debounce window of the trigger published after
	// each create of a job that is due now.
	TriggerWindow time.Duration `env:"TRIGGER_WINDOW" envDefault:"1s"`

	// QStashCurrentSigningKey and QStashNextSigningKey verify the
	// Upstash-Signature of calls to POST /api/workers. With neither set,
	// only the bearer WORKER_SECRET is accepted.
	QStashCurrentSigningKey string `env:"QSTASH_CURRENT_SIGNING_KEY"`
	QStashNextSigningKey    string `env:"QSTASH_NEXT_SIGNING_KEY"`
	// WorkerURL is the exact URL QStash calls, compared with the token's
	// sub. Defaults to PUBLIC_URL + "/api/workers".
	WorkerURL string `env:"QSTASH_WORKER_URL"`

	// WorkerSecret authenticates POST /api/workers as a bearer token.
	WorkerSecret string `env:"WORKER_SECRET"`
	// AuthJWTSecret verifies HS256 user tokens (development, or apps that
	// mint their own). Defaults, in development only, to a public secret.
	AuthJWTSecret string `env:"AUTH_JWT_SECRET"`
	// AuthJWKSURL verifies RS256/ES256 user tokens against a JWKS, such as
	// Clerk's https://<frontend-api>/.well-known/jwks.json.
	AuthJWKSURL string `env:"AUTH_JWKS_URL"`
	// AuthIssuer, when set, must equal the token's iss.
	AuthIssuer string `env:"AUTH_ISSUER"`
	// AuthAudience, when set, must contain one of the token's aud values.
	AuthAudience []string `env:"AUTH_AUDIENCE" envSeparator:","`
	// AuthAuthorizedParties, when set, must contain a token's azp when it
	// has one (Clerk's check for the requesting origin).
	AuthAuthorizedParties []string `env:"AUTH_AUTHORIZED_PARTIES" envSeparator:","`
	// AuthJWKSMinRefresh is the least time between two JWKS fetches caused
	// by tokens with an unknown kid: a key the issuer publishes is
	// accepted within it. At least 1s.
	AuthJWKSMinRefresh time.Duration `env:"AUTH_JWKS_MIN_REFRESH" envDefault:"30s"`
	// AdminToken, when set, is a bearer token for operators, who may see
	// and act on every user's jobs. At least 32 bytes.
	AdminToken string `env:"ADMIN_TOKEN"`
	// JobsEncryptionKey encrypts secret payload fields at rest:
	// comma-separated kid:base64key entries, the first encrypts.
	JobsEncryptionKey string `env:"JOBS_ENCRYPTION_KEY"`

	// CreateRatePerMinute and CreateBurst limit job creation per user
	// (a token bucket in Redis, shared by every instance).
	CreateRatePerMinute int `env:"CREATE_RATE_PER_MINUTE" envDefault:"120"`
	CreateBurst         int `env:"CREATE_BURST" envDefault:"60"`
	// WorkerAuthFailuresPerMinute limits failed POST /api/workers
	// authentications per client address.
	WorkerAuthFailuresPerMinute int `env:"WORKER_AUTH_FAILURES_PER_MINUTE" envDefault:"20"`

	// TrustedProxies are CIDRs of the proxies in front of jobhook whose
	// X-Forwarded-For is believed (e.g. 10.0.0.0/8). Empty: none.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`

	// Warnings lists the settings that production would refuse, for serve
	// to log in development.
	Warnings []string `env:"-"`
	// authJWTSecretSet records whether AUTH_JWT_SECRET was given.
	authJWTSecretSet bool

	// WorkerConcurrency is how many jobs one drain runs at once.
	WorkerConcurrency int `env:"WORKER_CONCURRENCY" envDefault:"8"`
	// JobTimeout bounds a job whose type sets no timeout of its own.
	JobTimeout time.Duration `env:"JOB_TIMEOUT" envDefault:"1m"`
	// DrainBudget bounds one drain: it claims jobs only while the rest of
	// the budget can fit the longest job timeout. Keep it under the
	// platform's limit on one request.
	DrainBudget time.Duration `env:"DRAIN_BUDGET" envDefault:"2m"`
	// LeaseDuration is a claimed job's lease, renewed by a heartbeat while
	// it runs: a dead worker's jobs are back in the queue within it.
	LeaseDuration time.Duration `env:"LEASE_DURATION" envDefault:"30s"`
	// MaxPayloadBytes limits a job's payload.
	MaxPayloadBytes int `env:"MAX_PAYLOAD_BYTES" envDefault:"262144"`
	// BodyLimitBytes limits a request body.
	BodyLimitBytes int64 `env:"BODY_LIMIT_BYTES" envDefault:"1048576"`

	// InProcessWorker also runs drains inside serve: right after each
	// create, and every InProcessInterval, for deployments that are not
	// serverless. Off by default: QStash (real or embedded) calls
	// POST /api/workers.
	InProcessWorker bool `env:"INPROCESS_WORKER" envDefault:"false"`
	// InProcessInterval is how often the in-process worker drains unasked
	// (retries and scheduled jobs that fell due).
	InProcessInterval time.Duration `env:"INPROCESS_INTERVAL" envDefault:"1s"`

	// ScrapeAllowPrivate lets web_scraping reach private, loopback and
	// link-local addresses (tests and local use only).
	ScrapeAllowPrivate bool `env:"SCRAPE_ALLOW_PRIVATE" envDefault:"false"`

	// OpenAIBaseURL, OpenAIAPIKey, OpenAITextModel and OpenAIImageModel
	// configure the AI job types (any OpenAI-compatible API).
	OpenAIBaseURL    string `env:"OPENAI_BASE_URL" envDefault:"https://api.openai.com/v1"`
	OpenAIAPIKey     string `env:"OPENAI_API_KEY"`
	OpenAITextModel  string `env:"OPENAI_TEXT_MODEL" envDefault:"gpt-4o-mini"`
	OpenAIImageModel string `env:"OPENAI_IMAGE_MODEL" envDefault:"dall-e-2"`
	// ImagesDir keeps generated images returned as base64; they are served
	// at ImagesBaseURL (default PUBLIC_URL + "/files/images").
	ImagesDir     string `env:"IMAGES_DIR" envDefault:"data/images"`
	ImagesBaseURL string `env:"IMAGES_BASE_URL"`
	// GraphAPIBaseURL and GraphAPIVersion configure the Instagram and
	// Facebook publishing types.
	GraphAPIBaseURL string `env:"GRAPH_API_BASE_URL" envDefault:"https://graph.facebook.com"`
	GraphAPIVersion string `env:"GRAPH_API_VERSION" envDefault:"v25.0"`

	// ChaosTasks registers the test-only job type chaos_record, which the
	// chaos suite uses to record every handler call. Only a binary built
	// with -tags chaos has it; others refuse to start with it. Never in
	// production.
	ChaosTasks bool `env:"JOBHOOK_CHAOS_TASKS" envDefault:"false"`

	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// LogFormat is text or json.
	LogFormat string `env:"LOG_FORMAT" envDefault:"text"`
	// ShutdownGrace is how long serve lets running jobs finish on
	// SIGTERM or SIGINT.
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" envDefault:"30s"`
}

// Load reads .env (when present; it never overrides variables already set)
// and then the environment, applies defaults and validates.
func Load() (*Config, error) {
	if err := godotenv.Load(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("config: read .env: %w", err)
	}
	return FromEnv()
}

// FromEnv reads the environment only.
func FromEnv() (*Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return nil, fmt.Errorf("config: %s", describeParseError(err))
	}
	if err := cfg.finish(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) finish() error {
	var problems []string
	c.AppEnv = strings.ToLower(strings.TrimSpace(c.AppEnv))
	if c.AppEnv != "development" && c.AppEnv != "production" {
		problems = append(problems, fmt.Sprintf("APP_ENV must be development or production, not %q", c.AppEnv))
	}
	if c.Port < 1 || c.Port > 65535 {
		problems = append(problems, fmt.Sprintf("PORT must be 1–65535, not %d", c.Port))
	}
	if c.PublicURL == "" {
		c.PublicURL = fmt.Sprintf("http://localhost:%d", c.Port)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.WorkerURL == "" {
		c.WorkerURL = c.PublicURL + "/api/workers"
	}
	if c.ImagesBaseURL == "" {
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
	if c.CreateRatePerMinute < 1 || c.CreateBurst < 1 {
		problems = append(problems, "CREATE_RATE_PER_MINUTE and CREATE_BURST must be at least 1")
	}
	if c.WorkerAuthFailuresPerMinute < 1 {
		problems = append(problems, "WORKER_AUTH_FAILURES_PER_MINUTE must be at least 1")
	}
	if c.JobsEncryptionKey != "" {
		if _, err := secretbox.ParseKeyring(c.JobsEncryptionKey); err != nil {
			problems = append(problems, "JOBS_ENCRYPTION_KEY: "+err.Error())
		}
	}
	for _, cidr := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(cidr)); err != nil {
			problems = append(problems, fmt.Sprintf("TRUSTED_PROXIES: %q is not a CIDR such as 10.0.0.0/8", cidr))
		}
	}
	if c.AuthJWKSMinRefresh < time.Second {
		problems = append(problems, "AUTH_JWKS_MIN_REFRESH must be at least 1s")
	}
	if c.AdminToken != "" && len(c.AdminToken) < 32 {
		problems = append(problems, "ADMIN_TOKEN must be at least 32 bytes")
	}
	if c.WorkerConcurrency < 1 || c.WorkerConcurrency > 1000 {
		problems = append(problems, fmt.Sprintf("WORKER_CONCURRENCY must be 1–1000, not %d", c.WorkerConcurrency))
	}
	if c.JobTimeout <= 0 {
		problems = append(problems, "JOB_TIMEOUT must be positive")
	}
	if c.LeaseDuration < 300*time.Millisecond {
		problems = append(problems, "LEASE_DURATION must be at least 300ms")
	}
	if c.DrainBudget <= 0 {
		problems = append(problems, "DRAIN_BUDGET must be positive")
	}
	if c.MaxPayloadBytes < 1 {
		problems = append(problems, "MAX_PAYLOAD_BYTES must be positive")
	}
	if c.BodyLimitBytes < int64(c.MaxPayloadBytes) {
		problems = append(problems, "BODY_LIMIT_BYTES must be at least MAX_PAYLOAD_BYTES")
	}
	if c.TriggerWindow < time.Second {
		problems = append(problems, "TRIGGER_WINDOW must be at least 1s")
	}
	if c.QStashToken != "" && c.QStashCurrentSigningKey == "" && c.QStashNextSigningKey == "" {
		problems = append(problems, "QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY are not: QStash's calls could not be verified")
	}
	if c.InProcessInterval <= 0 {
		problems = append(problems, "INPROCESS_INTERVAL must be positive")
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		problems = append(problems, err.Error())
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("LOG_FORMAT must be text or json, not %q", c.LogFormat))
	}
	guards := c.productionProblems()
	if c.Production() {
		problems = append(problems, guards...)
	} else {
		c.Warnings = guards
	}
	if len(problems) > 0 {
		return fmt.Errorf("config: %s", strings.Join(problems, "; "))
	}
	return nil
}

// productionProblems lists what production refuses: public development
// secrets, weak secrets, no way to verify QStash or users, the embedded
// backends, test settings.
func (c *Config) productionProblems() []string {
	var p []string
	switch {
	case c.WorkerSecret == auth.DevWorkerSecret:
		p = append(p, "WORKER_SECRET is the public development default; set a random secret of at least 32 bytes")
	case len(c.WorkerSecret) < 32:
		p = append(p, "WORKER_SECRET is shorter than 32 bytes")
	}
	if c.QStashCurrentSigningKey == "" && c.QStashNextSigningKey == "" {
		p = append(p, "no QStash signing keys: set QSTASH_CURRENT_SIGNING_KEY and QSTASH_NEXT_SIGNING_KEY")
	}
	switch {
	case c.AuthJWKSURL == "" && !c.authJWTSecretSet:
		p = append(p, "no user authentication configured: set AUTH_JWKS_URL (or AUTH_JWT_SECRET); the development secret is public")
	case c.authJWTSecretSet && len(c.AuthJWTSecret) < 32:
		p = append(p, "AUTH_JWT_SECRET is shorter than 32 bytes")
	}
	if c.DatabaseURL == "" {
		p = append(p, "DATABASE_URL is not set: the SQLite file is for development")
	}
	if c.RedisURL == "" {
		p = append(p, "REDIS_URL is not set: the in-process Redis is for development")
	}
	if c.QStashToken == "" {
		p = append(p, "QSTASH_TOKEN is not set: the in-process QStash is for development")
	}
	if c.ChaosTasks {
		p = append(p, "JOBHOOK_CHAOS_TASKS is a test setting")
	}
	return p
}

// describeParseError names the variable behind each value that did not
// parse, e.g. `JOB_TIMEOUT: "soon" is not a duration such as 30s or 5m`.
func describeParseError(err error) string {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err.Error()
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
	return strings.Join(parts, "; ")
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
