package openai

import (
	"encoding/json"
	"net/http"
)

// RateLimit is the x-ratelimit-* headers the fake sends with every answer
// to one model, as OpenAI does. Values are sent as given (so a test can
// send malformed ones); empty fields are not sent.
type RateLimit struct {
	LimitRequests     string // x-ratelimit-limit-requests, such as "500"
	RemainingRequests string // x-ratelimit-remaining-requests, such as "0"
	ResetRequests     string // x-ratelimit-reset-requests, such as "3s"
	LimitTokens       string // x-ratelimit-limit-tokens
	RemainingTokens   string // x-ratelimit-remaining-tokens
	ResetTokens       string // x-ratelimit-reset-tokens, such as "6m0s"
}

// header returns the headers of rl.
func (rl RateLimit) header() http.Header {
	h := http.Header{}
	for name, v := range map[string]string{
		"X-Ratelimit-Limit-Requests":     rl.LimitRequests,
		"X-Ratelimit-Remaining-Requests": rl.RemainingRequests,
		"X-Ratelimit-Reset-Requests":     rl.ResetRequests,
		"X-Ratelimit-Limit-Tokens":       rl.LimitTokens,
		"X-Ratelimit-Remaining-Tokens":   rl.RemainingTokens,
		"X-Ratelimit-Reset-Tokens":       rl.ResetTokens,
	} {
		if v != "" {
			h.Set(name, v)
		}
	}
	return h
}

// SetRateLimit makes every answer to a request for model carry rl's
// headers (on top of a failure's own).
func (s *Server) SetRateLimit(model string, rl RateLimit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rateLimits == nil {
		s.rateLimits = map[string]RateLimit{}
	}
	s.rateLimits[model] = rl
}

// ClearRateLimit stops sending model's x-ratelimit-* headers.
func (s *Server) ClearRateLimit(model string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rateLimits, model)
}

// FailNextModel makes the next n authorized POST calls for model answer f;
// calls for other models are not affected. Failures queued with FailNext
// come first.
func (s *Server) FailNextModel(model string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modelFailures == nil {
		s.modelFailures = map[string][]Failure{}
	}
	for range n {
		s.modelFailures[model] = append(s.modelFailures[model], f)
	}
}

// RateLimitNext makes the next n calls for model answer 429
// rate_limit_exceeded with the given Retry-After header (none when
// empty), plus model's x-ratelimit-* headers.
func (s *Server) RateLimitNext(model string, n int, retryAfter string) {
	s.FailNextModel(model, n, RateLimited(retryAfter))
}

// requestModel returns the model a request body names.
func requestModel(body []byte) string {
	var req struct {
		Model string `json:"model"`
	}
	_ = json.Unmarshal(body, &req)
	return req.Model
}

// modelAnswerLocked returns the failure queued for model, if any, and the
// rate-limit headers of its answer. s.mu is held.
func (s *Server) modelAnswerLocked(model string, queued bool) (*Failure, http.Header) {
	var f *Failure
	if q := s.modelFailures[model]; !queued && len(q) > 0 {
		f = &q[0]
		s.modelFailures[model] = q[1:]
	}
	var h http.Header
	if rl, ok := s.rateLimits[model]; ok {
		h = rl.header()
	}
	return f, h
}
