package config_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
		{map[string]string{"QSTASH_TOKEN": "t"}, "QSTASH_TOKEN is set but QSTASH_CURRENT_SIGNING_KEY"},
		{map[string]string{"TRIGGER_WINDOW": "10ms"}, "TRIGGER_WINDOW must be at least 1s"},
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
