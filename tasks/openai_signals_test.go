package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func TestParseOpenAIReset(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true},
		{"6m0s", 6 * time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"2m3.5s", 2*time.Minute + 3500*time.Millisecond, true},
		{"1h2m3.5s", openAIMaxRetryAfter, true},
		{"0s", 0, true},
		{" 7.66s ", 7660 * time.Millisecond, true},
		{"3", 3 * time.Second, true}, // seconds, as some compatible servers send
		{"0.5", 500 * time.Millisecond, true},
		{"99999h", openAIMaxRetryAfter, true},
		{"1e300", openAIMaxRetryAfter, true},
		{"", 0, false},
		{"-1s", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"1e400", 0, false},
		{"1s2", 0, false},
	} {
		d, ok := parseOpenAIReset(c.in)
		assert.Equal(t, c.ok, ok, "%q", c.in)
		assert.Equal(t, c.want, d, "%q", c.in)
	}
}

func TestOpenAIRateLimitsExhausted(t *testing.T) {
	for _, c := range []struct {
		name   string
		header http.Header
		want   time.Duration
		reason string
	}{
		{"none", http.Header{}, 0, ""},
		{"remaining", http.Header{"X-Ratelimit-Remaining-Requests": {"3"}, "X-Ratelimit-Reset-Requests": {"3s"}}, 0, ""},
		{"unknown (-1)", http.Header{"X-Ratelimit-Remaining-Requests": {"-1"}, "X-Ratelimit-Remaining-Tokens": {"-1"}}, 0, ""},
		{"malformed", http.Header{"X-Ratelimit-Remaining-Requests": {"zero"}, "X-Ratelimit-Remaining-Tokens": {"0.0"}, "X-Ratelimit-Reset-Requests": {"3s"}}, 0, ""},
		{"requests", http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"3s"}, "X-Ratelimit-Remaining-Tokens": {"1000"}},
			3 * time.Second, "OpenAI requests exhausted (x-ratelimit-remaining-requests 0), reset in ~3 s"},
		{"tokens", http.Header{"X-Ratelimit-Remaining-Tokens": {" 0 "}, "X-Ratelimit-Reset-Tokens": {"6m0s"}},
			6 * time.Minute, "OpenAI tokens exhausted (x-ratelimit-remaining-tokens 0), reset in ~6 min"},
		{"both: the later reset", http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"20ms"}, "X-Ratelimit-Remaining-Tokens": {"0"}, "X-Ratelimit-Reset-Tokens": {"2m3.5s"}},
			2*time.Minute + 3500*time.Millisecond, "OpenAI requests exhausted (x-ratelimit-remaining-requests 0), reset in ~20 ms; tokens exhausted (x-ratelimit-remaining-tokens 0), reset in ~2 min"},
		{"no reset: the minimum", http.Header{"X-Ratelimit-Remaining-Requests": {"0"}, "X-Ratelimit-Reset-Requests": {"whenever"}},
			OpenAIPauseMin, "OpenAI requests exhausted (x-ratelimit-remaining-requests 0)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, reason, ok := parseOpenAIRateLimits(c.header).exhausted()
			assert.Equal(t, c.reason != "", ok)
			assert.Equal(t, c.want, d)
			assert.Equal(t, c.reason, reason)
		})
	}
}

// openAIReports captures ReportFlowPause calls.
type openAIReports struct {
	mu   sync.Mutex
	list []jobs.FlowPauseError
}

func (r *openAIReports) report(_ context.Context, key string, d time.Duration, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, jobs.FlowPauseError{Key: key, After: d, Reason: reason})
	return nil
}

func (r *openAIReports) all() []jobs.FlowPauseError {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]jobs.FlowPauseError(nil), r.list...)
}

func newSignalsTextFake(t *testing.T) (*openaifake.Server, *openAIReports, *AITextGeneration) {
	t.Helper()
	fake := openaifake.New(t, aiTestKey)
	reps := &openAIReports{}
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, Timeout: 5 * time.Second, ReportFlowPause: reps.report})
	return fake, reps, h
}

// flowKeyOf is the key FlowKeys gives a payload, which the pause must name.
func flowKeyOf(t *testing.T, h jobs.FlowKeyer, payload string) string {
	t.Helper()
	keys, err := h.FlowKeys(json.RawMessage(payload))
	require.NoError(t, err)
	require.Len(t, keys, 1)
	return keys[0]
}

func assertNoAPIKey(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		assert.NotContains(t, s, aiTestKey)
		assert.NotContains(t, s, "0123456789abcdef")
	}
}

// remaining-requests 0 with a 3 s reset: the job succeeds and its model's
// key pauses 3.3 s; another model's answers pause nothing.
func TestOpenAIRemainingZeroReportsPauseOfThatModel(t *testing.T) {
	fake, reps, h := newSignalsTextFake(t)
	fake.SetRateLimit("gpt-4o", openaifake.RateLimit{LimitRequests: "500", RemainingRequests: "0", ResetRequests: "3s", RemainingTokens: "29000", ResetTokens: "2ms"})
	fake.SetRateLimit("gpt-4o-mini", openaifake.RateLimit{RemainingRequests: "499", ResetRequests: "120ms"})

	payload := `{"prompt": "hi", "model": "gpt-4o"}`
	_, err := h.Handle(context.Background(), aiJob(payload))
	require.NoError(t, err)
	want := jobs.FlowPauseError{Key: flowKeyOf(t, h, payload), After: 3300 * time.Millisecond,
		Reason: "OpenAI requests exhausted (x-ratelimit-remaining-requests 0), reset in ~3 s"}
	require.Equal(t, []jobs.FlowPauseError{want}, reps.all())
	assert.Equal(t, "openai:"+OpenAIKeyID(aiTestKey)+":gpt-4o", want.Key)

	_, err = h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`)) // the default, gpt-4o-mini
	require.NoError(t, err)
	assert.Len(t, reps.all(), 1, "the other model's answer paused something")
	for _, p := range reps.all() {
		assertNoAPIKey(t, p.Key, p.Reason)
	}
}

func TestOpenAIRateLimited429PausesModel(t *testing.T) {
	payload := `{"prompt": "hi", "model": "gpt-4o"}`
	cases := []struct {
		name      string
		rl        *openaifake.RateLimit
		failure   openaifake.Failure
		wantAfter time.Duration
		reason    string
		inner     time.Duration // the RetryAfter kept inside; 0 none
	}{
		{"Retry-After seconds", nil, openaifake.RateLimited("2"), 2200 * time.Millisecond, "OpenAI rate limit (429), Retry-After ~2 s", 2 * time.Second},
		{"Retry-After wins over the reset", &openaifake.RateLimit{RemainingTokens: "0", ResetTokens: "6m0s"}, openaifake.RateLimited("20"),
			22 * time.Second, "OpenAI rate limit (429), Retry-After ~20 s", 20 * time.Second},
		{"the reset when no Retry-After", &openaifake.RateLimit{RemainingTokens: "0", ResetTokens: "6m0s"}, openaifake.RateLimited(""),
			396 * time.Second, "OpenAI rate limit (429): tokens exhausted (x-ratelimit-remaining-tokens 0), reset in ~6 min", 0},
		{"nothing said: the default", nil, openaifake.RateLimited(""), 5500 * time.Millisecond, "OpenAI rate limit (429), no wait given", 0},
		{"malformed Retry-After", nil, openaifake.RateLimited("soon"), 5500 * time.Millisecond, "OpenAI rate limit (429), no wait given", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fake, reps, h := newSignalsTextFake(t)
			if c.rl != nil {
				fake.SetRateLimit("gpt-4o", *c.rl)
			}
			fake.FailNextModel("gpt-4o", 1, c.failure)
			_, err := h.Handle(context.Background(), aiJob(payload))
			var p *jobs.FlowPauseError
			require.ErrorAs(t, err, &p)
			assert.False(t, jobs.IsPermanent(err))
			assert.Equal(t, flowKeyOf(t, h, payload), p.Key)
			assert.Equal(t, c.wantAfter, p.After)
			assert.Equal(t, c.reason, p.Reason)
			var ra *jobs.RetryAfterError
			if c.inner > 0 {
				require.ErrorAs(t, err, &ra)
				assert.Equal(t, c.inner, ra.After)
			} else {
				assert.False(t, errors.As(err, &ra))
			}
			assert.Empty(t, reps.all(), "the pause is the error's")
			assertNoAPIKey(t, err.Error(), p.Key, p.Reason)
		})
	}
}

// A 429 for one model leaves the other models alone (the fake's failure
// is per model).
func TestOpenAIRateLimitIsPerModel(t *testing.T) {
	fake, _, h := newSignalsTextFake(t)
	fake.RateLimitNext("gpt-4o", 1, "1")
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi", "model": "gpt-4o-mini"}`))
	require.NoError(t, err)
	_, err = h.Handle(context.Background(), aiJob(`{"prompt": "hi", "model": "gpt-4o"}`))
	var p *jobs.FlowPauseError
	require.ErrorAs(t, err, &p)
	assert.True(t, strings.HasSuffix(p.Key, ":gpt-4o"), p.Key)
}

// insufficient_quota is billing, not a rate limit: permanent, no pause.
func TestOpenAIInsufficientQuotaIsNotAPause(t *testing.T) {
	fake, reps, h := newSignalsTextFake(t)
	f := openaifake.InsufficientQuota()
	f.Header = http.Header{"Retry-After": {"5"}}
	fake.FailNextModel("gpt-4o-mini", 1, f)
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	var p *jobs.FlowPauseError
	assert.False(t, errors.As(err, &p), "billing paused the key: %v", err)
	assert.Empty(t, reps.all())

	// With x-should-retry: true it is retried, still not as a pause.
	f.Header.Set("X-Should-Retry", "true")
	fake.FailNextModel("gpt-4o-mini", 1, f)
	_, err = h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	assert.False(t, errors.As(err, &p), "billing paused the key: %v", err)
}

// A 5xx is retried as before; its headers still report an exhausted limit.
func TestOpenAIServerErrorReportsExhaustedLimit(t *testing.T) {
	fake, reps, h := newSignalsTextFake(t)
	fake.SetRateLimit("gpt-4o-mini", openaifake.RateLimit{RemainingRequests: "0", ResetRequests: "10s"})
	fake.FailNextModel("gpt-4o-mini", 1, openaifake.ServerError())
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	var p *jobs.FlowPauseError
	assert.False(t, errors.As(err, &p))
	require.Len(t, reps.all(), 1)
	assert.Equal(t, 11*time.Second, reps.all()[0].After)
}

func TestOpenAIImageRemainingZeroReportsPause(t *testing.T) {
	fake := openaifake.New(t, aiTestKey)
	reps := &openAIReports{}
	h := NewAIImageGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, ReportFlowPause: reps.report})
	fake.SetRateLimit(OpenAIImageModelDefault, openaifake.RateLimit{RemainingRequests: "0", ResetRequests: "1m0s"})
	payload := `{"prompt": "a lighthouse"}`
	_, err := h.Handle(context.Background(), &models.Job{ID: 1, Type: TypeAIImageGeneration, Payload: models.JSON(payload)})
	require.NoError(t, err)
	require.Len(t, reps.all(), 1)
	assert.Equal(t, flowKeyOf(t, h, payload), reps.all()[0].Key)
	assert.Equal(t, 66*time.Second, reps.all()[0].After)
}

// Malformed and hostile headers never crash a call nor pause anything.
func TestOpenAIMalformedRateLimitHeadersIgnored(t *testing.T) {
	fake, reps, h := newSignalsTextFake(t)
	fake.SetRateLimit("gpt-4o-mini", openaifake.RateLimit{RemainingRequests: "0x0", ResetRequests: "-3s",
		RemainingTokens: strings.Repeat("9", 400), ResetTokens: "1e999"})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.NoError(t, err)
	assert.Empty(t, reps.all())
}
