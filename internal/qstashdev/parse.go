package qstashdev

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const forwardPrefix = "Upstash-Forward-"

// parseQStashDuration parses QStash's duration syntax used by Upstash-Delay
// and Upstash-Timeout: one or more <integer><unit> pairs with units d, h, m
// and s, e.g. "50s", "1d10h30m". An empty string is zero.
func parseQStashDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("invalid duration %q: want <number><unit> pairs with units d, h, m, s (e.g. 1d10h30m)", s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: %w", s, err)
		}
		var unit time.Duration
		switch rest[i] {
		case 'd':
			unit = 24 * time.Hour
		case 'h':
			unit = time.Hour
		case 'm':
			unit = time.Minute
		case 's':
			unit = time.Second
		default:
			return 0, fmt.Errorf("invalid duration %q: unknown unit %q (use d, h, m or s)", s, rest[i])
		}
		if n > int64(math.MaxInt64/unit) || total > math.MaxInt64-time.Duration(n)*unit {
			return 0, fmt.Errorf("invalid duration %q: too large", s)
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	return total, nil
}

// forwardedHeaders returns the Upstash-Forward-* headers of h with the prefix
// stripped, e.g. Upstash-Forward-X-Foo: v becomes X-Foo: v, plus Content-Type
// when set. These are the headers QStash adds to every delivery.
func forwardedHeaders(h http.Header) http.Header {
	out := http.Header{}
	for name, vals := range h {
		if len(name) > len(forwardPrefix) && strings.EqualFold(name[:len(forwardPrefix)], forwardPrefix) {
			key := http.CanonicalHeaderKey(name[len(forwardPrefix):])
			out[key] = append(out[key], vals...)
		}
	}
	if ct := h.Get("Content-Type"); ct != "" {
		out.Set("Content-Type", ct)
	}
	return out
}

// validDestination checks that dest is an absolute http(s) URL. URL groups
// and "api/…" destinations are not supported by qstashdev.
func validDestination(dest string) error {
	if dest == "" {
		return fmt.Errorf("destination is empty: want /v2/publish/<http(s) URL>")
	}
	u, err := url.Parse(dest)
	if err != nil {
		return fmt.Errorf("invalid destination %q: %w", dest, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid destination %q: must be an http:// or https:// URL (qstashdev supports no URL groups or APIs)", dest)
	}
	return nil
}

// validMethod reports whether m is a method QStash delivers with.
func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// validScheduleID reports whether id uses only the characters QStash allows
// in a custom schedule id: letters, digits, '-', '.' and '_'.
func validScheduleID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_':
		default:
			return false
		}
	}
	return true
}

// retryAfterHeaders are the response headers QStash reads to schedule the
// next retry, in order of precedence.
var retryAfterHeaders = []string{"Retry-After", "X-RateLimit-Reset", "X-RateLimit-Reset-Requests", "X-RateLimit-Reset-Tokens"}

// retryAfter returns the retry delay a destination asked for in its response
// headers: an integer number of seconds, an HTTP date, or a Go duration
// ("6m5s"). ok is false when none is given, it cannot be parsed, or it is more
// than a day (QStash then falls back to its default backoff).
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	for _, name := range retryAfterHeaders {
		v := strings.TrimSpace(h.Get(name))
		if v == "" {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n < 0 || n > 86400 {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
			if d < 0 {
				d = 0
			}
			return d, d <= 24*time.Hour
		}
		if d, err := time.ParseDuration(v); err == nil {
			if d < 0 || d > 24*time.Hour {
				return 0, false
			}
			return d, true
		}
		return 0, false
	}
	return 0, false
}

// DefaultBackoff is QStash's documented backoff before retry n (n = times
// already retried, counting from 1): min(86400, e^(2.5n)) seconds, i.e. 12 s,
// 2 m 28 s, 30 m 8 s, 6 h 7 m 6 s, then 24 h.
func DefaultBackoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	secs := math.Min(86400, math.Exp(2.5*float64(n)))
	return time.Duration(secs * float64(time.Second))
}
