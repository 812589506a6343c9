package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
)

// TestAuthJWKSMinRefresh: AUTH_JWKS_MIN_REFRESH defaults to the JWKS
// verifier's own default (30s), can be set, and must be at least 1s.
func TestAuthJWKSMinRefresh(t *testing.T) {
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, auth.DefaultRefreshRateLimit, cfg.AuthJWKSMinRefresh)

	t.Setenv("AUTH_JWKS_MIN_REFRESH", "2m")
	cfg, err = config.FromEnv()
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, cfg.AuthJWKSMinRefresh)

	t.Setenv("AUTH_JWKS_MIN_REFRESH", "10ms")
	_, err = config.FromEnv()
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "AUTH_JWKS_MIN_REFRESH must be at least 1s"), err.Error())
}
