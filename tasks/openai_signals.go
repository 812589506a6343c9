package tasks

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// OpenAI's rate-limit signals, read from every answer, and the pauses of
// the model's key (openai:<keyID>:<model>) they ask for.
//
//	signal                                          pause
//	x-ratelimit-remaining-requests: 0 (any answer)  x-ratelimit-reset-requests, else 1 s
//	x-ratelimit-remaining-tokens: 0 (any answer)    x-ratelimit-reset-tokens, else 1 s
//	429 rate limit                                  retry-after-ms / Retry-After, else the
//	                                                resets above, else 5 s
//	429 insufficient_quota and billing codes        none: the job fails for good
//
// Each pause gets a 10% margin and lasts at least 1 s (OpenAI's resets go
// down to milliseconds; a shorter pause would end before the next claim).
// A successful answer reports its pause (ReportFlowPause) and succeeds; a
// 429 returns jobs.PauseFlow (the job is deferred, no attempt is used).
// Missing, "-1" (some compatible servers) and malformed headers are
// ignored.
const (
	// OpenAIPauseMargin is the share added to the wait OpenAI announces.
	OpenAIPauseMargin = 0.10
	// OpenAIPauseMin is the shortest pause.
	OpenAIPauseMin = time.Second
	// OpenAIRateLimitWaitDefault is the pause after a 429 that says
	// nothing of when to come back.
	OpenAIRateLimitWaitDefault = 5 * time.Second
)

// openAIRateLimits is what one answer's x-ratelimit-* headers say.
type openAIRateLimits struct {
	// Remaining counts are -1 when unknown.
	RemainingRequests, RemainingTokens int64
	// Resets are 0 with Has… false when unknown.
	ResetRequests, ResetTokens       time.Duration
	HasResetRequests, HasResetTokens bool
}

// parseOpenAIRateLimits reads the x-ratelimit-* headers.
func parseOpenAIRateLimits(h http.Header) openAIRateLimits {
	l := openAIRateLimits{
		RemainingRequests: parseOpenAIRemaining(h.Get("X-Ratelimit-Remaining-Requests")),
		RemainingTokens:   parseOpenAIRemaining(h.Get("X-Ratelimit-Remaining-Tokens")),
	}
	l.ResetRequests, l.HasResetRequests = parseOpenAIReset(h.Get("X-Ratelimit-Reset-Requests"))
	l.ResetTokens, l.HasResetTokens = parseOpenAIReset(h.Get("X-Ratelimit-Reset-Tokens"))
	return l
}

// parseOpenAIRemaining reads a remaining count, -1 when missing, negative
// or malformed.
func parseOpenAIRemaining(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// parseOpenAIReset reads a reset time: a Go-style duration such as "20ms",
// "1s", "6m0s" or "1h2m3.5s" (OpenAI's form), or a number of seconds (some
// compatible servers), at most openAIMaxRetryAfter.
func parseOpenAIReset(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || !(secs >= 0) || math.IsInf(secs, 1) {
			return 0, false
		}
		if secs >= openAIMaxRetryAfter.Seconds() {
			return openAIMaxRetryAfter, true
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < 0 {
		return 0, false
	}
	return min(d, openAIMaxRetryAfter), true
}

// exhausted returns the wait until the exhausted limits reset, and which
// they are, such as "requests exhausted (x-ratelimit-remaining-requests 0),
// reset in ~3 s".
func (l openAIRateLimits) exhausted() (time.Duration, string, bool) {
	var d time.Duration
	var parts []string
	add := func(what string, reset time.Duration, hasReset bool) {
		if !hasReset {
			reset = OpenAIPauseMin
		}
		d = max(d, reset)
		p := fmt.Sprintf("%s exhausted (x-ratelimit-remaining-%s 0)", what, what)
		if hasReset {
			p += ", reset in " + approxDuration(reset)
		}
		parts = append(parts, p)
	}
	if l.RemainingRequests == 0 {
		add("requests", l.ResetRequests, l.HasResetRequests)
	}
	if l.RemainingTokens == 0 {
		add("tokens", l.ResetTokens, l.HasResetTokens)
	}
	if len(parts) == 0 {
		return 0, "", false
	}
	return d, "OpenAI " + strings.Join(parts, "; "), true
}

// openAIRequestModel returns the model a request body names.
func openAIRequestModel(body any) string {
	if m, ok := body.(map[string]any); ok {
		if s, ok := m["model"].(string); ok {
			return s
		}
	}
	return ""
}

// openAIPauseWithMargin adds the margin to d, within OpenAIPauseMin and
// openAIMaxRetryAfter.
func openAIPauseWithMargin(d time.Duration) time.Duration {
	return pauseWithMargin(d, OpenAIPauseMargin, OpenAIPauseMin, openAIMaxRetryAfter)
}

// rateSignals reads the rate-limit signals of an answer to the request
// body whose call ended with err (nil on success). A 429 that is a rate
// limit becomes jobs.PauseFlow for the model's key, keeping err's class
// inside it; any other answer whose headers say a limit is used up
// reports the key's pause with the client's report function.
func (c *openAIClient) rateSignals(ctx context.Context, body any, resp *http.Response, err error) error {
	model := openAIRequestModel(body)
	if model == "" {
		return err
	}
	key := openAIFlowKey(c.keyID, model)
	limits := parseOpenAIRateLimits(resp.Header)
	wait, reason, exhausted := limits.exhausted()

	var oe *OpenAIError
	if err != nil && resp.StatusCode == http.StatusTooManyRequests && !jobs.IsPermanent(err) &&
		!(errors.As(err, &oe) && (openAIBillingCodes[oe.Code] || openAIBillingCodes[oe.Type])) {
		switch d, ok := openAIRetryDelay(resp.Header, c.clock.Now()); {
		case ok:
			wait, reason = d, "OpenAI rate limit (429), Retry-After "+approxDuration(d)
		case exhausted:
			reason = "OpenAI rate limit (429): " + strings.TrimPrefix(reason, "OpenAI ")
		default:
			wait, reason = OpenAIRateLimitWaitDefault, "OpenAI rate limit (429), no wait given"
		}
		return jobs.PauseFlow(err, key, openAIPauseWithMargin(wait), reason)
	}
	if exhausted && c.report != nil {
		// A failed report is ignored: the call has happened, and the next
		// answer says again.
		_ = c.report(ctx, key, openAIPauseWithMargin(wait), reason)
	}
	return err
}
