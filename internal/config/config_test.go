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
		{map[string]string{"APP_ENV": "production"}, "WORKER_SECRET must be set in production"},
		{map[string]string{"APP_ENV": "production", "WORKER_SECRET": "x"}, "AUTH_JWT_SECRET must be set in production"},
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
