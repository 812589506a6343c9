// Package ratelimit limits requests across every jobhook instance through
// Redis: a token bucket (GCRA) per key for job creation, and a counter of
// failed authentications per client address for the worker endpoint.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter keeps its state in Redis under a prefix.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// New returns a Limiter with keys under prefix (e.g. "jobs:ratelimit:").
// A nil now uses time.Now.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rdb: rdb, prefix: prefix, now: now}
}

// Rate is a token bucket: PerMinute tokens a minute, at most Burst at once.
type Rate struct {
	PerMinute int
	Burst     int
}

// gcraScript is a token bucket kept as one "theoretical arrival time".
// KEYS: the bucket. ARGV: now ms, ms per token, burst.
// Returns {allowed (1|0), retry after ms}.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, string.format('%.0f', allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', new_tat - now + 1000))
return {1, '0'}
`)

// Allow takes one token from key's bucket. When the bucket is empty it
// returns false and how long until a token is back.
func (l *Limiter) Allow(ctx context.Context, key string, r Rate) (bool, time.Duration, error) {
	if r.PerMinute < 1 || r.Burst < 1 {
		return false, 0, fmt.Errorf("ratelimit: bad rate %+v", r)
	}
	interval := float64(time.Minute.Milliseconds()) / float64(r.PerMinute)
	res, err := gcraScript.Run(ctx, l.rdb, []string{l.prefix + "bucket:" + key},
		l.now().UnixMilli(), strconv.FormatFloat(interval, 'f', 3, 64), r.Burst).Slice()
	if err != nil {
		return false, 0, fmt.Errorf("ratelimit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("ratelimit: unexpected answer %v", res)
	}
	allowed, _ := res[0].(int64)
	wait, _ := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
	return allowed == 1, time.Duration(wait) * time.Millisecond, nil
}

// Failures counts failures for key within a fixed window.
type Failures struct {
	Limit  int
	Window time.Duration
}

// Blocked reports whether key has reached the failure limit, and when the
// window ends.
func (l *Limiter) Blocked(ctx context.Context, key string, f Failures) (bool, time.Duration, error) {
	k := l.prefix + "failures:" + key
	n, err := l.rdb.Get(ctx, k).Int()
	if err == redis.Nil {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("ratelimit: %w", err)
	}
	if n < f.Limit {
		return false, 0, nil
	}
	ttl, err := l.rdb.PTTL(ctx, k).Result()
	if err != nil || ttl < 0 {
		ttl = f.Window
	}
	return true, ttl, nil
}

// Fail records one failure for key.
func (l *Limiter) Fail(ctx context.Context, key string, f Failures) error {
	k := l.prefix + "failures:" + key
	_, err := l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, k)
		p.Do(ctx, "PEXPIRE", k, f.Window.Milliseconds(), "NX")
		return nil
	})
	if err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	return nil
}
