package jobs

import (
	"math/rand/v2"
	"time"
)

// Backoff defaults.
const (
	DefaultBackoffBase = 10 * time.Second
	DefaultBackoffMax  = time.Hour
)

// BackoffFunc returns how long to wait before the attempt after the given
// one (attempt counts from 1).
type BackoffFunc func(attempt int) time.Duration

// ExponentialBackoff doubles the delay with each attempt, from base up to
// max, with "equal jitter": the delay for attempt n is uniform in
// [d/2, d] where d = base·2^(n-1), capped at max. Successive delays
// therefore never shrink until the cap, and retries of many jobs that failed
// together spread out. A nil rnd uses the global source.
func ExponentialBackoff(base, max time.Duration, rnd func() float64) BackoffFunc {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if max < base {
		max = base
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	return func(attempt int) time.Duration {
		if attempt < 1 {
			attempt = 1
		}
		d := base
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		if d > max {
			d = max
		}
		half := d / 2
		return half + time.Duration(rnd()*float64(d-half))
	}
}
