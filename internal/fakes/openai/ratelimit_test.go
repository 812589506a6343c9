package openai

import (
	"net/http"
	"testing"
)

func TestRateLimitHeadersAndFailuresPerModel(t *testing.T) {
	s := New(t, "k")
	s.SetRateLimit("gpt-4o", RateLimit{LimitRequests: "500", RemainingRequests: "0", ResetRequests: "3s", ResetTokens: "6m0s"})
	s.RateLimitNext("gpt-4o", 1, "2")

	resp, _ := post(t, s.URL+"/chat/completions", "k", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "" {
		t.Errorf("other model: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body := post(t, s.URL+"/chat/completions", "k", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" ||
		resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" || resp.Header.Get("X-Ratelimit-Reset-Requests") != "3s" {
		t.Errorf("rate limited: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, _ = post(t, s.URL+"/chat/completions", "k", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Limit-Requests") != "500" ||
		resp.Header.Get("X-Ratelimit-Reset-Tokens") != "6m0s" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "" {
		t.Errorf("after the 429: %d %v", resp.StatusCode, resp.Header)
	}
	s.ClearRateLimit("gpt-4o")
	resp, _ = post(t, s.URL+"/images/generations", "k", `{"model":"gpt-4o","prompt":"x"}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Ratelimit-Limit-Requests") != "" {
		t.Errorf("cleared: %d %v", resp.StatusCode, resp.Header)
	}
}
