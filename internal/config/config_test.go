package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/config"
)

func TestDefaultsNeedNoEnvironment(t *testing.T) {
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, 8080, cfg.Port)
	require.Equal(t, "http://localhost:8080", cfg.PublicURL)
	require.Empty(t, cfg.DatabaseURL)
	require.False(t, cfg.InProcessWorker)
	require.Equal(t, "embedded", cfg.QStashMode())
	require.Equal(t, "http://localhost:8080/api/workers", cfg.WorkerURL)
	require.False(t, cfg.ScrapeAllowPrivate)
}

func TestBadSettingsAreNamed(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PORT": "70000"}, "PORT must be"},
		{map[string]string{"PORT": "eighty"}, "PORT"},
		{map[string]string{"APP_ENV": "staging"}, "APP_ENV must be"},
		{map[string]string{"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY"},
		{map[string]string{"JOB_TIMEOUT": "soon"}, "JOB_TIMEOUT"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"MAX_PAYLOAD_BYTES": "2000000"}, "BODY_LIMIT_BYTES must be at least MAX_PAYLOAD_BYTES"},
		{map[string]string{"BATCH_BODY_LIMIT_BYTES": "1000"}, "BATCH_BODY_LIMIT_BYTES must be at least MAX_PAYLOAD_BYTES"},
		{map[string]string{"QSTASH_TOKEN": "t"}, "QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY"},
		{map[string]string{"TRIGGER_WINDOW": "10ms"}, "TRIGGER_WINDOW must be at least 1s"},
		{map[string]string{"DRAIN_BUDGET": "1m", "JOB_TIMEOUT": "2m"}, "DRAIN_BUDGET (1m) must be longer than JOB_TIMEOUT (2m)"},
		{map[string]string{"METRICS_ADDR": "9090"}, "METRICS_ADDR must be host:port"},
		{map[string]string{"METRICS_ADDR": "127.0.0.1:"}, "METRICS_ADDR must be host:port"},
		{map[string]string{"METRICS_ADDR": "localhost:http"}, "METRICS_ADDR must be host:port"},
		{map[string]string{"METRICS_ADDR": ":70000"}, "METRICS_ADDR must be host:port"},
		{map[string]string{"METRICS_ADDR": ":8080"}, "uses PORT (8080)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := config.FromEnv()
			require.Error(t, err)
			require.True(t, strings.Contains(err.Error(), tc.want), "error %q does not name %q", err, tc.want)
		})
	}
}

// goodProduction is a complete production configuration.
func goodProduction() map[string]string {
	return map[string]string{
		"APP_ENV":                    "production",
		"WORKER_SECRET":              strings.Repeat("w", 40),
		"QSTASH_TOKEN":               "qstash-token",
		"QSTASH_CURRENT_SIGNING_KEY": "sig_current",
		"QSTASH_NEXT_SIGNING_KEY":    "sig_next",
		"AUTH_JWKS_URL":              "https://clerk.example.com/.well-known/jwks.json",
		"DATABASE_URL":               "postgres://app@db.example.com/jobhook",
		"REDIS_URL":                  "rediss://default:token@redis.example.com:6379",
		"PUBLIC_URL":                 "https://jobs.example.com",
	}
}

// TestMetricsAddrAccepted: the listener's usual forms load.
func TestMetricsAddrAccepted(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:9090", ":9090", "[::1]:9090", "localhost:9090", "127.0.0.1:8080"} {
		t.Setenv("METRICS_ADDR", addr)
		cfg, err := config.FromEnv()
		require.NoError(t, err, addr)
		require.Equal(t, addr, cfg.MetricsAddr)
	}
}

func TestProductionAcceptsACompleteConfiguration(t *testing.T) {
	for k, v := range goodProduction() {
		t.Setenv(k, v)
	}
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	require.True(t, cfg.Production())
	require.Empty(t, cfg.AuthJWTSecret, "no development secret in production")
}

// TestProductionGuards: each bad production setting alone stops serve, and
// the message names it.
func TestProductionGuards(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"development worker secret", map[string]string{"WORKER_SECRET": ""}, "WORKER_SECRET is the public development default"},
		{"short worker secret", map[string]string{"WORKER_SECRET": "short-secret"}, "WORKER_SECRET is shorter than 32 bytes"},
		{"no signing keys", map[string]string{"QSTASH_CURRENT_SIGNING_KEY": "", "QSTASH_NEXT_SIGNING_KEY": "", "QSTASH_TOKEN": ""}, "no QStash signing keys"},
		{"no user auth", map[string]string{"AUTH_JWKS_URL": ""}, "no user authentication configured"},
		{"short HS256 secret", map[string]string{"AUTH_JWT_SECRET": "tiny"}, "AUTH_JWT_SECRET is shorter than 32 bytes"},
		{"SQLite", map[string]string{"DATABASE_URL": ""}, "DATABASE_URL is not set"},
		{"in-process Redis", map[string]string{"REDIS_URL": ""}, "REDIS_URL is not set"},
		{"in-process QStash", map[string]string{"QSTASH_TOKEN": ""}, "QSTASH_TOKEN is not set"},
		{"test job type", map[string]string{"JOBHOOK_CHAOS_TASKS": "true"}, "JOBHOOK_CHAOS_TASKS is a test setting"},
		{"short admin token", map[string]string{"ADMIN_TOKEN": "admin"}, "ADMIN_TOKEN must be at least 32 bytes"},
		{"no public URL", map[string]string{"PUBLIC_URL": ""}, "PUBLIC_URL is not set: QStash would be told to call http://localhost:8080"},
		{"private scraping", map[string]string{"SCRAPE_ALLOW_PRIVATE": "true"}, "SCRAPE_ALLOW_PRIVATE=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := goodProduction()
			for k, v := range tc.set {
				env[k] = v
			}
			for k, v := range env {
				t.Setenv(k, v)
			}
			_, err := config.FromEnv()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestDevelopmentWarnsInstead: the same settings in development start, with
// one warning each for serve to log.
func TestDevelopmentWarnsInstead(t *testing.T) {
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	joined := strings.Join(cfg.Warnings, "\n")
	for _, want := range []string{"WORKER_SECRET is the public development default", "no QStash signing keys", "no user authentication configured", "DATABASE_URL is not set", "REDIS_URL is not set", "QSTASH_TOKEN is not set"} {
		require.Contains(t, joined, want)
	}
}

// TestURLSettingsMustBeAbsoluteHTTP: a PUBLIC_URL without a scheme (which
// the embedded QStash cannot call) and the other URL settings are refused,
// by name, in development too.
func TestURLSettingsMustBeAbsoluteHTTP(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"PUBLIC_URL", "localhost:8090"},
		{"PUBLIC_URL", "jobs.example.com"},
		{"PUBLIC_URL", "ftp://jobs.example.com"},
		{"PUBLIC_URL", "https://"},
		{"QSTASH_WORKER_URL", "localhost:8090/api/workers"},
		{"QSTASH_WORKER_URL", "/api/workers"},
		{"QSTASH_URL", "qstash.upstash.io"},
		{"IMAGES_BASE_URL", "files/images"},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, err := config.FromEnv()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.name+" must be an absolute http(s) URL")
			require.Contains(t, err.Error(), tc.value)
		})
	}
	t.Setenv("PUBLIC_URL", "http://localhost:8090/")
	t.Setenv("QSTASH_WORKER_URL", "https://tunnel.example.com/api/workers")
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, "http://localhost:8090", cfg.PublicURL)
	require.Equal(t, "https://tunnel.example.com/api/workers", cfg.WorkerURL)
}

// TestProductionRefusalHasOneProblemPerLine: every problem on its own line.
func TestProductionRefusalHasOneProblemPerLine(t *testing.T) {
	t.Setenv("APP_ENV", "production")
	_, err := config.FromEnv()
	require.Error(t, err)
	var cerr *config.Error
	require.ErrorAs(t, err, &cerr)
	require.Greater(t, len(cerr.Problems), 5)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(cerr.Problems)+1, err.Error())
	require.Equal(t, fmt.Sprintf("config: %d problems:", len(cerr.Problems)), lines[0])
	for i, p := range cerr.Problems {
		require.Equal(t, "  - "+p, lines[i+1])
		require.NotContains(t, p, "\n")
	}
}

// TestEachCommandValidatesWhatItUses: naming settings validates those
// alone, production refusals included.
func TestEachCommandValidatesWhatItUses(t *testing.T) {
	t.Run("migrate in production needs only DATABASE_URL", func(t *testing.T) {
		t.Setenv("APP_ENV", "production")
		t.Setenv("JOB_TIMEOUT", "soon") // not read by migrate
		_, err := config.FromEnv("APP_ENV", "DATABASE_URL", "SQLITE_PATH")
		require.EqualError(t, err, "config: DATABASE_URL is not set: the SQLite file is for development")
		t.Setenv("DATABASE_URL", "postgres://app@db.example.com/jobhook")
		cfg, err := config.FromEnv("APP_ENV", "DATABASE_URL", "SQLITE_PATH")
		require.NoError(t, err)
		require.Equal(t, "postgres://app@db.example.com/jobhook", cfg.DatabaseURL)
	})
	t.Run("schedules sync needs the token, not the signing keys", func(t *testing.T) {
		t.Setenv("QSTASH_TOKEN", "t")
		_, err := config.FromEnv()
		require.ErrorContains(t, err, "QSTASH_CURRENT_SIGNING_KEY", "serve still needs them")
		cfg, err := config.FromEnv("APP_ENV", "QSTASH_TOKEN", "QSTASH_URL", "PORT", "PUBLIC_URL", "SCHEDULES_FILE")
		require.NoError(t, err)
		require.Equal(t, "t", cfg.QStashToken)
	})
	t.Run("a bad value of a setting in use is named", func(t *testing.T) {
		t.Setenv("JOB_TIMEOUT", "soon")
		_, err := config.FromEnv("JOB_TIMEOUT")
		require.ErrorContains(t, err, `JOB_TIMEOUT must be a duration such as 30s or 5m, not "soon"`)
	})
	t.Run("unknown names are a programming error", func(t *testing.T) {
		_, err := config.FromEnv("NO_SUCH_SETTING")
		require.ErrorContains(t, err, `"NO_SUCH_SETTING" is not a setting`)
	})
}

// TestSettingsShowTheDefaultsLoadApplies: Settings' defaults, which help
// texts and README show, are the values Load applies.
func TestSettingsShowTheDefaultsLoadApplies(t *testing.T) {
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	want := map[string]string{
		"PORT": fmt.Sprint(cfg.Port), "DRAIN_BUDGET": config.FormatDuration(cfg.DrainBudget),
		"JOB_TIMEOUT": config.FormatDuration(cfg.JobTimeout), "MIGRATE_ON_START": "true", "SCRAPE_ALLOW_PRIVATE": "false",
		"REDIS_PREFIX": cfg.RedisPrefix, "BODY_LIMIT_BYTES": fmt.Sprint(cfg.BodyLimitBytes), "DATABASE_URL": "",
		"PUBLIC_URL": "http://localhost:$PORT",
	}
	for name, def := range want {
		s, ok := config.Lookup(name)
		require.True(t, ok, name)
		require.Equal(t, def, s.Default, name)
		require.NotEmpty(t, s.Summary, name)
	}
	require.Equal(t, handlers.DefaultDrainBudget, cfg.DrainBudget, "one default for the drain budget")
	require.Equal(t, 4*time.Minute, cfg.DrainBudget, "README documents 4m")
	require.Equal(t, "2m", config.FormatDuration(2*time.Minute))
	require.Equal(t, "1h30m", config.FormatDuration(90*time.Minute))
	require.Equal(t, "1h", config.FormatDuration(time.Hour))
	require.Equal(t, "300ms", config.FormatDuration(300*time.Millisecond))
}
