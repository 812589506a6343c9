package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/testenv"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestTokenBucket(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		c := &clock{t: time.Now()}
		l := ratelimit.New(b.Redis, b.Prefix, c.now)
		rate := ratelimit.Rate{PerMinute: 60, Burst: 5}
		for i := 0; i < 5; i++ {
			ok, _, err := l.Allow(ctx, "alice", rate)
			require.NoError(t, err)
			require.True(t, ok, "burst token %d", i+1)
		}
		ok, wait, err := l.Allow(ctx, "alice", rate)
		require.NoError(t, err)
		require.False(t, ok, "the burst is spent")
		require.InDelta(t, time.Second, wait, float64(5*time.Millisecond), "one token a second")

		ok, _, err = l.Allow(ctx, "bob", rate)
		require.NoError(t, err)
		require.True(t, ok, "buckets are per key")

		c.advance(time.Second)
		ok, _, err = l.Allow(ctx, "alice", rate)
		require.NoError(t, err)
		require.True(t, ok, "a token came back")
	})
}

func TestFailureWindow(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		l := ratelimit.New(b.Redis, b.Prefix, nil)
		f := ratelimit.Failures{Limit: 3, Window: time.Minute}
		for i := 0; i < 3; i++ {
			blocked, _, err := l.Blocked(ctx, "10.0.0.1", f)
			require.NoError(t, err)
			require.False(t, blocked)
			require.NoError(t, l.Fail(ctx, "10.0.0.1", f))
		}
		blocked, wait, err := l.Blocked(ctx, "10.0.0.1", f)
		require.NoError(t, err)
		require.True(t, blocked)
		require.Greater(t, wait, 50*time.Second)
		blocked, _, err = l.Blocked(ctx, "10.0.0.2", f)
		require.NoError(t, err)
		require.False(t, blocked, "per address")
	})
}
