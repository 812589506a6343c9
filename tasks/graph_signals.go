package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// Graph's rate-limit signals, read from every answer, and the pauses they
// ask for.
//
//	signal                                   key                 pause
//	X-Business-Use-Case-Usage ≥ 95%          ig:/fb: (the job's)  estimated_time_to_regain_access, else 1 min
//	X-App-Usage ≥ 95%                        graph:app            1 min (the header gives no time)
//	error 4, 341 (app limit)                 graph:app            Retry-After, else 1 min
//	error 17, 32, 613, 80001–80014, HTTP 429 ig:/fb: (the job's)  estimated_time_to_regain_access, else Retry-After, else 1 min
//	error subcode 2207042 (daily posts)      ig:                  1 h
//	content_publishing_limit used up         ig:                  1 h, then read again
//
// Each pause gets a 10% margin and lasts at least 5 s. A successful answer
// near the limit reports its pauses (ReportFlowPause) and succeeds; an
// error answer that is a limit returns jobs.PauseFlow for its key (the job
// is deferred, no attempt is used) and reports any other key's pause.
const (
	// GraphUsagePausePercent is the usage, in percent of any metric of
	// X-Business-Use-Case-Usage or X-App-Usage, from which a key pauses.
	GraphUsagePausePercent = 95
	// GraphPauseMargin is the share added to the wait Graph announces.
	GraphPauseMargin = 0.10
	// GraphPauseMin is the shortest pause.
	GraphPauseMin = 5 * time.Second
	// GraphPauseMax bounds any pause, should a header announce days.
	GraphPauseMax = 24 * time.Hour
	// GraphPublishingLimitRecheck is the pause of an Instagram account
	// whose 24-hour publishing quota is used up. Graph says neither when
	// the oldest post of the rolling window was made nor when it leaves
	// it, so the account is read again after this estimate (a job whose
	// expiry comes first fails then).
	GraphPublishingLimitRecheck = graphQuotaWait
)

// graphMaxSignalHeader bounds the usage headers parsed; a longer header is
// ignored.
const graphMaxSignalHeader = 16 << 10

// flowPause is one key's pause.
type flowPause struct {
	Key    string
	After  time.Duration
	Reason string
}

// graphUsageMetrics are the percentages of X-App-Usage and of one
// X-Business-Use-Case-Usage entry.
type graphUsageMetrics struct {
	CallCount    float64 `json:"call_count"`
	TotalCPUTime float64 `json:"total_cputime"`
	TotalTime    float64 `json:"total_time"`
}

// worst returns the highest metric and its name.
func (m graphUsageMetrics) worst() (string, float64) {
	name, v := "call_count", m.CallCount
	if m.TotalCPUTime > v {
		name, v = "total_cputime", m.TotalCPUTime
	}
	if m.TotalTime > v {
		name, v = "total_time", m.TotalTime
	}
	return name, v
}

// graphBUCEntry is one entry of X-Business-Use-Case-Usage.
type graphBUCEntry struct {
	Type string `json:"type"`
	graphUsageMetrics
	// RegainMinutes is estimated_time_to_regain_access, in minutes; 0
	// when access is not blocked.
	RegainMinutes float64 `json:"estimated_time_to_regain_access"`
}

// graphSignals is what one answer's headers say about the limits.
type graphSignals struct {
	// BUC is the worst X-Business-Use-Case-Usage entry, if any.
	BUC *graphBUCEntry
	// App is X-App-Usage, if present and readable.
	App *graphUsageMetrics
	// RetryAfter is the Retry-After header, if readable.
	RetryAfter    time.Duration
	HasRetryAfter bool
}

// parseGraphSignals reads the usage headers. A missing, oversized or
// malformed header is ignored.
func parseGraphSignals(h http.Header, now time.Time) graphSignals {
	var s graphSignals
	if v := h.Get("X-Business-Use-Case-Usage"); v != "" && len(v) <= graphMaxSignalHeader {
		var byID map[string][]graphBUCEntry
		if json.Unmarshal([]byte(v), &byID) == nil {
			for _, entries := range byID {
				for i := range entries {
					if s.BUC == nil || graphBUCWorse(entries[i], *s.BUC) {
						e := entries[i]
						s.BUC = &e
					}
				}
			}
		}
	}
	if v := h.Get("X-App-Usage"); v != "" && len(v) <= graphMaxSignalHeader {
		var m graphUsageMetrics
		if json.Unmarshal([]byte(v), &m) == nil {
			s.App = &m
		}
	}
	s.RetryAfter, s.HasRetryAfter = parseRetryAfter(h.Get("Retry-After"), now)
	return s
}

// graphBUCWorse reports whether a blocks longer than b, or as long with a
// higher usage.
func graphBUCWorse(a, b graphBUCEntry) bool {
	if a.RegainMinutes != b.RegainMinutes {
		return a.RegainMinutes > b.RegainMinutes
	}
	_, av := a.worst()
	_, bv := b.worst()
	return av > bv
}

// regain returns the BUC entry's estimated time to regain access.
func (e *graphBUCEntry) regain() (time.Duration, bool) {
	if e == nil || !(e.RegainMinutes > 0) {
		return 0, false
	}
	if e.RegainMinutes >= GraphPauseMax.Minutes() {
		return GraphPauseMax, true
	}
	return time.Duration(e.RegainMinutes * float64(time.Minute)), true
}

// reason describes the entry, such as "business use case usage 97%
// (call_count), access returns in ~2 min".
func (e *graphBUCEntry) reason() string {
	name, v := e.worst()
	r := fmt.Sprintf("business use case usage %s%% (%s)", graphPercent(v), name)
	if d, ok := e.regain(); ok {
		r += ", access returns in " + approxDuration(d)
	}
	return r
}

// usagePauses returns the pauses the usage headers ask for: the account's
// key when its business use case usage reaches the threshold or Graph
// announces a time to regain access, and graph:app when the app's usage
// reaches it.
func (s graphSignals) usagePauses(accountKey string) []flowPause {
	var out []flowPause
	if s.BUC != nil && accountKey != "" {
		_, v := s.BUC.worst()
		d, blocked := s.BUC.regain()
		if blocked || v >= GraphUsagePausePercent {
			if !blocked {
				d = graphRateLimitWait
			}
			out = append(out, flowPause{Key: accountKey, After: graphPauseWithMargin(d), Reason: s.BUC.reason()})
		}
	}
	if s.App != nil {
		if name, v := s.App.worst(); v >= GraphUsagePausePercent {
			out = append(out, flowPause{Key: FlowKeyGraphApp, After: graphPauseWithMargin(graphRateLimitWait),
				Reason: fmt.Sprintf("app usage %s%% (%s)", graphPercent(v), name)})
		}
	}
	return out
}

// graphThrottleKinds names Graph's rate-limit error codes, and whether the
// limit is the app's (graph:app) rather than the account's.
var graphThrottleKinds = map[int]struct {
	name string
	app  bool
}{
	4:   {"app request limit", true},
	17:  {"user request limit", false},
	32:  {"page request limit", false},
	341: {"application limit", true},
	613: {"custom rate limit", false},
}

// throttlePause returns the pause a Graph error asks for, if it is a rate
// or quota limit.
func (s graphSignals) throttlePause(ge *GraphError, accountKey string) (flowPause, bool) {
	var name string
	app := false
	switch k, ok := graphThrottleKinds[ge.Code]; {
	case ge.Subcode == 2207042:
		if accountKey == "" {
			return flowPause{}, false
		}
		return flowPause{Key: accountKey, After: graphPauseWithMargin(graphQuotaWait),
			Reason: fmt.Sprintf("Instagram daily publishing limit reached (error %d/%d), re-checking in %s",
				ge.Code, ge.Subcode, approxDuration(graphPauseWithMargin(graphQuotaWait)))}, true
	case ok:
		name, app = k.name, k.app
	case ge.Code >= 80001 && ge.Code <= 80014:
		name = "business use case rate limit"
	case ge.Code == 0 && ge.Status == http.StatusTooManyRequests:
		name = "HTTP 429"
	default:
		return flowPause{}, false
	}
	key := accountKey
	if app {
		key = FlowKeyGraphApp
	}
	if key == "" {
		return flowPause{}, false
	}
	d, given := graphRateLimitWait, ""
	if r, ok := s.BUC.regain(); ok && !app {
		d, given = r, ", access returns in "+approxDuration(r)
	} else if s.HasRetryAfter {
		d, given = s.RetryAfter, ", Retry-After "+approxDuration(s.RetryAfter)
	}
	return flowPause{Key: key, After: graphPauseWithMargin(d),
		Reason: fmt.Sprintf("Graph %s (error %d)%s", name, ge.Code, given)}, true
}

// readSignals reads the rate-limit signals of an answer whose call ended
// with err (nil on success). A limit error becomes jobs.PauseFlow for its
// key, keeping err's class inside it; every other pause the headers ask
// for is reported with cfg.ReportFlowPause. A permanent error only
// reports.
func (c *graphClient) readSignals(ctx context.Context, h http.Header, err error) error {
	s := parseGraphSignals(h, time.Now())
	pauses := s.usagePauses(c.key)
	var ge *GraphError
	if err != nil && !jobs.IsPermanent(err) && errors.As(err, &ge) {
		if p, ok := s.throttlePause(ge, c.key); ok {
			rest := pauses[:0]
			for _, o := range pauses {
				if o.Key == p.Key {
					p.After = max(p.After, o.After) // one pause per key: the longest
					continue
				}
				rest = append(rest, o)
			}
			c.reportPauses(ctx, rest)
			return jobs.PauseFlow(err, p.Key, p.After, p.Reason)
		}
	}
	c.reportPauses(ctx, pauses)
	return err
}

// reportPauses reports pauses. A failed report is ignored: the call it
// came with has happened, and the next answer says again.
func (c *graphClient) reportPauses(ctx context.Context, pauses []flowPause) {
	for _, p := range pauses {
		_ = c.cfg.ReportFlowPause(ctx, p.Key, p.After, p.Reason)
	}
}

// graphPublishingLimit is the answer of GET
// /{ig-user-id}/content_publishing_limit.
type graphPublishingLimit struct {
	Data []struct {
		QuotaUsage *float64 `json:"quota_usage"`
		Config     struct {
			QuotaTotal    *float64 `json:"quota_total"`
			QuotaDuration float64  `json:"quota_duration"`
		} `json:"config"`
	} `json:"data"`
}

// errInstagramQuotaUsed is the error of a publish held back because the
// account's 24-hour publishing quota is used up.
var errInstagramQuotaUsed = errors.New("graph: Instagram publishing quota used up")

// checkPublishingLimit reads the account's content_publishing_limit before
// media_publish. When quota_usage has reached config.quota_total, it
// returns jobs.PauseFlow for the account's key, for
// GraphPublishingLimitRecheck plus the margin. The read is advisory: when
// it fails for another reason than a limit (a pause) or the end of ctx,
// or its answer is unreadable, publishing goes ahead, and media_publish's
// own 2207042 error still pauses the key.
func checkPublishingLimit(ctx context.Context, c *graphClient, igUser string) error {
	var out graphPublishingLimit
	err := c.get(ctx, "read content_publishing_limit", igUser+"/content_publishing_limit",
		url.Values{"fields": {"config,quota_usage"}}, &out)
	var pause *jobs.FlowPauseError
	switch {
	case err == nil:
	case errors.As(err, &pause) || ctx.Err() != nil:
		return err
	default:
		return nil
	}
	if len(out.Data) == 0 || out.Data[0].QuotaUsage == nil || out.Data[0].Config.QuotaTotal == nil {
		return nil
	}
	used, total := *out.Data[0].QuotaUsage, *out.Data[0].Config.QuotaTotal
	if total <= 0 || used < total {
		return nil
	}
	window := time.Duration(min(out.Data[0].Config.QuotaDuration, GraphPauseMax.Seconds())) * time.Second
	if window <= 0 {
		window = 24 * time.Hour
	}
	d := graphPauseWithMargin(GraphPublishingLimitRecheck)
	reason := fmt.Sprintf("Instagram publishing quota used: %s of %s posts in %s, re-checking in %s",
		graphPercent(used), graphPercent(total), approxDuration(window), approxDuration(d))
	return jobs.PauseFlow(fmt.Errorf("%w (%s of %s)", errInstagramQuotaUsed, graphPercent(used), graphPercent(total)),
		FlowPrefixInstagram+igUser, d, reason)
}

// graphPauseWithMargin adds the margin to d, within GraphPauseMin and
// GraphPauseMax.
func graphPauseWithMargin(d time.Duration) time.Duration {
	return pauseWithMargin(d, GraphPauseMargin, GraphPauseMin, GraphPauseMax)
}

// graphPercent formats a percentage or a count without needless decimals.
func graphPercent(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.1f", v)
}
