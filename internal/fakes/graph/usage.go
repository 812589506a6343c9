package graph

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Rate limits, as the real Graph API reports them: every answer about an
// account (its edges, its containers and media, its Page posts) carries
// X-Business-Use-Case-Usage for that account when a Usage is set, and
// every answer carries X-App-Usage when an AppUsage is set. A throttled
// account answers Graph's throttling error (with the headers) instead of
// the call. content_publishing_limit counts the account's publishes on top
// of a configurable base, and media_publish refuses a post over the quota
// with error 9 / subcode 2207042, as Instagram does.

// Throttling error codes of Graph's business use case limits.
const (
	// CodePagesThrottled is the Pages business use case limit.
	CodePagesThrottled = 80001
	// CodeInstagramThrottled is the Instagram business use case limit.
	CodeInstagramThrottled = 80002
	// CodeAppLimit is the app's request limit (X-App-Usage at 100%).
	CodeAppLimit = 4
	// SubcodePublishingLimit is Instagram's "max posts per day reached".
	SubcodePublishingLimit = 2207042
)

// DefaultQuotaTotal is the publishing quota of an account (posts per 24
// hours) when SetPublishingLimit has not set one: the current guide's.
const DefaultQuotaTotal = 100

// Usage is the business use case usage reported for one account, in
// percent of its limits, as in X-Business-Use-Case-Usage.
type Usage struct {
	// Type is the business use case, such as "instagram" or "pages";
	// "instagram" when empty.
	Type         string
	CallCount    int
	TotalCPUTime int
	TotalTime    int
	// EstimatedTimeToRegainAccess is in minutes; 0 unless throttled.
	EstimatedTimeToRegainAccess int
}

// AppUsage is the app's usage, in percent, as in X-App-Usage.
type AppUsage struct {
	CallCount    int
	TotalCPUTime int
	TotalTime    int
}

// throttle makes an account's calls answer a throttling error.
type throttle struct {
	// left counts the calls still throttled; -1 is until cleared.
	left          int
	code, subcode int
}

// publishingLimit is an account's content_publishing_limit.
type publishingLimit struct {
	base, total int
}

// usageState is the rate-limit configuration, guarded by Server.mu.
type usageState struct {
	accounts  map[string]Usage
	app       *AppUsage
	throttled map[string]*throttle
	limits    map[string]publishingLimit
	// raw replaces the usage headers of every answer when set, so tests
	// can send malformed ones.
	raw http.Header
}

// SetUsage makes every answer about account carry u in
// X-Business-Use-Case-Usage.
func (s *Server) SetUsage(account string, u Usage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usage.accounts == nil {
		s.usage.accounts = map[string]Usage{}
	}
	s.usage.accounts[account] = u
}

// ClearUsage stops reporting account's usage.
func (s *Server) ClearUsage(account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.usage.accounts, account)
}

// SetAppUsage makes every answer carry u in X-App-Usage; nil stops it.
func (s *Server) SetAppUsage(u *AppUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage.app = u
}

// SetRawUsageHeaders makes every answer carry h instead of the usage
// headers the settings above produce (nil goes back to them), such as a
// malformed X-Business-Use-Case-Usage.
func (s *Server) SetRawUsageHeaders(h http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage.raw = h.Clone()
}

// ThrottleNext makes the next n calls about account answer Graph's
// throttling error code (such as CodeInstagramThrottled) and subcode, with
// HTTP 400 and the usage headers, as Graph does. n < 0 throttles until
// Unthrottle.
func (s *Server) ThrottleNext(account string, n, code, subcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usage.throttled == nil {
		s.usage.throttled = map[string]*throttle{}
	}
	if n < 0 {
		n = -1
	}
	s.usage.throttled[account] = &throttle{left: n, code: code, subcode: subcode}
}

// Unthrottle ends account's throttling.
func (s *Server) Unthrottle(account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.usage.throttled, account)
}

// SetPublishingLimit sets account's content_publishing_limit: quota_usage
// is used plus the account's publishes since, and quota_total is total
// (DefaultQuotaTotal when 0). media_publish fails with 2207042 when
// quota_usage has reached quota_total.
func (s *Server) SetPublishingLimit(account string, used, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.usage.limits == nil {
		s.usage.limits = map[string]publishingLimit{}
	}
	s.usage.limits[account] = publishingLimit{base: used - s.accountPublishesLocked(account), total: total}
}

// accountOfLocked returns the account a request is about: the owner of a
// container or media id, else the path's first id. s.mu is held.
func (s *Server) accountOfLocked(parts []string) string {
	if len(parts) == 0 {
		return ""
	}
	id := parts[0]
	if c, ok := s.containers[id]; ok {
		return c.IGUser
	}
	for _, c := range s.containers {
		if c.MediaID == id {
			return c.IGUser
		}
	}
	return id
}

// usageHeaderLocked returns the usage headers of an answer about account.
// s.mu is held.
func (s *Server) usageHeaderLocked(account string) http.Header {
	if s.usage.raw != nil {
		return s.usage.raw.Clone()
	}
	h := http.Header{}
	if u, ok := s.usage.accounts[account]; ok {
		typ := u.Type
		if typ == "" {
			typ = "instagram"
		}
		b, _ := json.Marshal(map[string][]map[string]any{account: {{
			"type":                            typ,
			"call_count":                      u.CallCount,
			"total_cputime":                   u.TotalCPUTime,
			"total_time":                      u.TotalTime,
			"estimated_time_to_regain_access": u.EstimatedTimeToRegainAccess,
		}}})
		h.Set("X-Business-Use-Case-Usage", string(b))
	}
	if a := s.usage.app; a != nil {
		b, _ := json.Marshal(map[string]int{"call_count": a.CallCount, "total_cputime": a.TotalCPUTime, "total_time": a.TotalTime})
		h.Set("X-App-Usage", string(b))
	}
	return h
}

// throttleLocked returns the throttling answer of a call about account, if
// it is throttled, and counts the call. s.mu is held.
func (s *Server) throttleLocked(account string) *Failure {
	t, ok := s.usage.throttled[account]
	if !ok {
		return nil
	}
	if t.left > 0 {
		t.left--
		if t.left == 0 {
			delete(s.usage.throttled, account)
		}
	}
	msg := "There have been too many calls to this account. Wait a bit and try again."
	switch {
	case t.subcode == SubcodePublishingLimit:
		msg = "The account has reached its limit of published posts for the day."
	case t.code == CodeAppLimit:
		msg = "(#4) Application request limit reached"
	}
	return &Failure{Status: http.StatusBadRequest, Body: GraphError(msg, "OAuthException", t.code, t.subcode, false)}
}

// accountPublishesLocked counts account's published containers. s.mu is
// held.
func (s *Server) accountPublishesLocked(account string) int {
	n := 0
	for _, c := range s.containers {
		if c.Published && c.IGUser == account {
			n++
		}
	}
	return n
}

// quotaLocked returns account's quota_usage and quota_total. s.mu is held.
func (s *Server) quotaLocked(account string) (used, total int) {
	l := s.usage.limits[account]
	total = l.total
	if total <= 0 {
		total = DefaultQuotaTotal
	}
	return max(l.base+s.accountPublishesLocked(account), 0), total
}

// publishingLimitLocked answers GET /{ig-user}/content_publishing_limit.
// s.mu is held.
func (s *Server) publishingLimitLocked(account string) (int, string) {
	used, total := s.quotaLocked(account)
	return http.StatusOK, fmt.Sprintf(`{"data":[{"quota_usage":%d,"config":{"quota_total":%d,"quota_duration":86400}}]}`, used, total)
}

// overQuotaLocked returns the 2207042 error media_publish answers when
// account's quota is used up. s.mu is held.
func (s *Server) overQuotaLocked(account string) (int, string, bool) {
	used, total := s.quotaLocked(account)
	if used < total {
		return 0, "", false
	}
	return http.StatusBadRequest, GraphError("The account has reached its limit of published posts for the day.",
		"OAuthException", 9, SubcodePublishingLimit, false), true
}
