package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

// scriptCalls counts the script calls Redis answered (a first EVALSHA
// that finds no script, and is sent again as EVAL, counts once).
type scriptCalls struct{ n atomic.Int64 }

func (s *scriptCalls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (s *scriptCalls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (s *scriptCalls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); err == nil && (name == "evalsha" || name == "eval") {
			s.n.Add(1)
		}
		return err
	}
}

// countingClient is a client of the backend's Redis that counts script
// calls.
func countingClient(t *testing.T, b testenv.Backend) (*redis.Client, *scriptCalls) {
	t.Helper()
	o := b.Redis.Options()
	rdb := redis.NewClient(&redis.Options{Addr: o.Addr, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig})
	t.Cleanup(func() { _ = rdb.Close() })
	calls := &scriptCalls{}
	rdb.AddHook(calls)
	return rdb, calls
}

// TestBusyKeyTakesTokensAhead: a key asked for again and again costs far
// fewer Redis calls than requests, and a key asked for now and then one
// call per request, spending exactly one token each.
func TestBusyKeyTakesTokensAhead(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		c := &clock{t: time.Now()}
		rdb, calls := countingClient(t, b)
		l := ratelimit.New(rdb, b.Prefix, c.now)
		busy := ratelimit.Rate{PerMinute: 60, Burst: 1000}
		for i := 0; i < 100; i++ {
			ok, _, err := l.Allow(ctx, "busy", busy)
			require.NoError(t, err)
			require.True(t, ok, "request %d", i+1)
		}
		require.LessOrEqual(t, calls.n.Load(), int64(12), "tokens taken ahead: 1, 2, 4, 8, then 16 a call")

		calls.n.Store(0)
		quiet := ratelimit.Rate{PerMinute: 1, Burst: 5}
		for i := 0; i < 5; i++ {
			ok, _, err := l.Allow(ctx, "quiet", quiet)
			require.NoError(t, err)
			require.True(t, ok, "request %d", i+1)
			c.advance(ratelimit.PrefetchHold + time.Millisecond)
		}
		require.Equal(t, int64(5), calls.n.Load(), "an idle key asks Redis each time")
		ok, wait, err := l.Allow(ctx, "quiet", quiet)
		require.NoError(t, err)
		require.False(t, ok, "five requests spent the five tokens, no more")
		require.Greater(t, wait, 50*time.Second)
	})
}

// TestHeldTokensLapse: tokens taken ahead serve only within PrefetchHold;
// after it the next request asks Redis again and gives the unused ones
// back, so none is lost to the key.
func TestHeldTokensLapse(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		c := &clock{t: time.Now()}
		rdb, calls := countingClient(t, b)
		l := ratelimit.New(rdb, b.Prefix, c.now)
		other := ratelimit.New(b.Redis, b.Prefix, c.now)
		rate := ratelimit.Rate{PerMinute: 1, Burst: 8}
		for i := 0; i < 2; i++ { // 1 token, then 2: one held
			ok, _, err := l.Allow(ctx, "k", rate)
			require.NoError(t, err)
			require.True(t, ok)
		}
		require.Equal(t, int64(2), calls.n.Load())
		c.advance(ratelimit.PrefetchHold)
		ok, _, err := l.Allow(ctx, "k", rate)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, int64(3), calls.n.Load(), "the held token lapsed")

		allowed := 3
		for _, lim := range []*ratelimit.Limiter{other, l} {
			for {
				ok, _, err := lim.Allow(ctx, "k", rate)
				require.NoError(t, err)
				if !ok {
					break
				}
				allowed++
			}
		}
		require.Equal(t, rate.Burst, allowed, "the lapsed token went back to the bucket")
	})
}

// TestPrefetchNeverExceedsTheBucket: two processes hammering one key from
// many goroutines are allowed no more than the bucket holds in all, and,
// once each has spent what it holds, exactly that.
func TestPrefetchNeverExceedsTheBucket(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		c := &clock{t: time.Now()} // no refill, no lapse
		rate := ratelimit.Rate{PerMinute: 1, Burst: 100}
		limiters := []*ratelimit.Limiter{ratelimit.New(b.Redis, b.Prefix, c.now), ratelimit.New(b.Redis, b.Prefix, c.now)}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := limiters[g%2]
				for i := 0; i < 20; i++ {
					ok, _, err := l.Allow(ctx, "shared", rate)
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		require.LessOrEqual(t, allowed.Load(), int64(100))
		for _, l := range limiters {
			for {
				ok, _, err := l.Allow(ctx, "shared", rate)
				require.NoError(t, err)
				if !ok {
					break
				}
				allowed.Add(1)
			}
		}
		require.Equal(t, int64(100), allowed.Load())
	})
}
