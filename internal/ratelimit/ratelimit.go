// Package ratelimit limits requests across every jobhook instance through
// Redis: a token bucket (GCRA) per key for job creation, and a counter of
// failed authentications per client address for the worker endpoint.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limiter keeps its state in Redis under a prefix.
//
// Allow keeps a few tokens of a busy key in the process for a moment, so
// that a user creating many jobs at once does not cost a Redis call per
// request: see Allow.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time

	mu   sync.Mutex
	held map[string]*heldTokens
}

// Bounds of the tokens Allow keeps in the process.
const (
	// MaxPrefetch is the most tokens one Redis call takes for a key.
	MaxPrefetch = 16
	// PrefetchHold is how long tokens taken ahead stay usable; unused
	// ones are then given back to the bucket with the key's next Redis
	// call, so a key never spends tokens later than they were taken.
	PrefetchHold = 200 * time.Millisecond
	// maxHeldKeys bounds the keys kept; beyond it expired entries are
	// swept.
	maxHeldKeys = 10000
)

// heldTokens are one key's tokens taken ahead from Redis.
type heldTokens struct {
	tokens  int       // usable until expires
	expires time.Time // when tokens lapse
	want    int       // how many the next Redis call asks for
}

// New returns a Limiter with keys under prefix (e.g. "jobs:ratelimit:").
// A nil now uses time.Now.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rdb: rdb, prefix: prefix, now: now, held: map[string]*heldTokens{}}
}

// Rate is a token bucket: PerMinute tokens a minute, at most Burst at once.
type Rate struct {
	PerMinute int
	Burst     int
}

// gcraScript is a token bucket kept as one "theoretical arrival time". It
// first takes back the tokens given back (taken ahead earlier, unused),
// then takes up to the wanted number of tokens, but never more than half
// of those left (at least one), so that tokens taken ahead cannot use up
// a nearly empty bucket.
// KEYS: the bucket. ARGV: now ms, ms per token, burst, tokens wanted,
// tokens given back.
// Returns {tokens taken (0 when refused), retry after ms}.
var gcraScript = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local give = tonumber(ARGV[5])
if interval <= 0 then return {want, '0'} end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
tat = tat - give * interval
if tat < now then tat = now end
local available = math.floor((now - tat) / interval + burst)
if available < 1 then
  if give > 0 then
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', tat - now + 1000))
  end
  return {0, string.format('%.0f', tat + interval - burst * interval - now)}
end
local take = math.min(want, math.max(1, math.floor(available / 2)))
local new_tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', new_tat - now + 1000))
return {take, '0'}
`)

// Allow takes one token from key's bucket. When the bucket is empty it
// returns false and how long until a token is back.
//
// A key asked for again within PrefetchHold of its last Redis call is
// busy: its next Redis call takes twice as many tokens as the last (up to
// MaxPrefetch, and at most half of those left), and the extra ones serve
// the key's next requests in this process, without Redis, until
// PrefetchHold has passed; those left then go back to the bucket with the
// key's next Redis call. A key asked for now and then costs one Redis
// call per request, as without prefetching. Tokens held are never more
// than the bucket gave, so the limit is never looser; while one process
// holds tokens, another may be refused them, for at most PrefetchHold.
func (l *Limiter) Allow(ctx context.Context, key string, r Rate) (bool, time.Duration, error) {
	if r.PerMinute < 1 || r.Burst < 1 {
		return false, 0, fmt.Errorf("ratelimit: bad rate %+v", r)
	}
	want, give := l.takeHeld(key)
	if want == 0 {
		return true, 0, nil
	}
	interval := float64(time.Minute.Milliseconds()) / float64(r.PerMinute)
	res, err := gcraScript.Run(ctx, l.rdb, []string{l.prefix + "bucket:" + key},
		l.now().UnixMilli(), strconv.FormatFloat(interval, 'f', 6, 64), r.Burst, want, give).Slice()
	if err != nil {
		return false, 0, fmt.Errorf("ratelimit: %w", err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("ratelimit: unexpected answer %v", res)
	}
	taken, _ := res[0].(int64)
	if taken < 1 {
		wait, _ := strconv.ParseFloat(fmt.Sprint(res[1]), 64)
		return false, time.Duration(wait) * time.Millisecond, nil
	}
	l.hold(key, int(taken)-1)
	return true, 0, nil
}

// takeHeld spends one of key's held tokens and returns 0, or returns how
// many tokens the Redis call to make should ask for, and how many lapsed
// tokens it gives back.
func (l *Limiter) takeHeld(key string) (want, give int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[key]
	switch {
	case h == nil:
		return 1, 0
	case now.Before(h.expires) && h.tokens > 0:
		h.tokens--
		return 0, 0
	case now.Before(h.expires):
		// Busy: the tokens of the last call are spent within the hold.
		h.want = min(2*h.want, MaxPrefetch)
		return h.want, 0
	default:
		give, h.tokens, h.want = h.tokens, 0, 1
		return 1, give
	}
}

// hold keeps extra tokens taken for key until PrefetchHold from now.
func (l *Limiter) hold(key string, extra int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.held[key]
	if h == nil {
		if len(l.held) >= maxHeldKeys {
			for k, o := range l.held {
				if !now.Before(o.expires) {
					delete(l.held, k)
				}
			}
		}
		h = &heldTokens{want: 1}
		l.held[key] = h
	}
	h.tokens += extra
	h.expires = now.Add(PrefetchHold)
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
