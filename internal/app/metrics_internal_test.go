package app

import (
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/metrics"
)

// TestMetricsHandlerPolicy: /metrics is served behind METRICS_TOKEN when
// it is set, open in development without it, and off (nil: 404) in
// production without it.
func TestMetricsHandlerPolicy(t *testing.T) {
	for _, c := range []struct {
		env, token string
		served     bool
	}{
		{"production", "", false},
		{"production", "a-metrics-token-of-at-least-32-bytes!", true},
		{"development", "", true},
		{"development", "a-metrics-token-of-at-least-32-bytes!", true},
	} {
		a := &App{Config: &config.Config{AppEnv: c.env, MetricsToken: c.token}, Metrics: metrics.New(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		require.Equal(t, c.served, a.metricsHandler() != nil, "APP_ENV=%s token set=%v", c.env, c.token != "")
	}
}
