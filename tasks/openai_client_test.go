package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/jobs"
)

func TestOpenAIRetryDelay(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
		ok     bool
	}{
		{"none", http.Header{}, 0, false},
		{"seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{"fractional seconds", http.Header{"Retry-After": {"1.5"}}, 1500 * time.Millisecond, true},
		{"date", http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}, 30 * time.Second, true},
		{"past date", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0, true},
		{"ms wins", http.Header{"Retry-After": {"7"}, "Retry-After-Ms": {"1200"}}, 1200 * time.Millisecond, true},
		{"bad ms falls back", http.Header{"Retry-After": {"3"}, "Retry-After-Ms": {"soon"}}, 3 * time.Second, true},
		{"capped", http.Header{"Retry-After": {"999999999999"}}, openAIMaxRetryAfter, true},
		{"capped ms", http.Header{"Retry-After-Ms": {"1e300"}}, openAIMaxRetryAfter, true},
		{"negative", http.Header{"Retry-After": {"-5"}}, 0, false},
		{"NaN", http.Header{"Retry-After": {"NaN"}, "Retry-After-Ms": {"NaN"}}, 0, false},
		{"garbage", http.Header{"Retry-After": {"later"}}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ok := openAIRetryDelay(tc.header, now)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, d)
		})
	}
}

func TestOpenAIRetryAfterDateUsesClock(t *testing.T) {
	clock := jobs.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	fake := openaifake.New(t, aiTestKey)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, Clock: clock})
	fake.FailNext(1, openaifake.RateLimited(clock.Now().Add(90*time.Second).Format(http.TimeFormat)))
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	var ra *jobs.RetryAfterError
	require.ErrorAs(t, err, &ra)
	assert.Equal(t, 90*time.Second, ra.After)
}

func TestOpenAIStatusClassification(t *testing.T) {
	fake := openaifake.New(t, aiTestKey)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey})
	for _, tc := range []struct {
		name      string
		failure   openaifake.Failure
		permanent bool
	}{
		{"404 unknown model", openaifake.Failure{Status: 404, Body: openaifake.ErrorBody("The model `x` does not exist", "invalid_request_error", "model_not_found", "")}, true},
		{"403", openaifake.Failure{Status: 403, Body: openaifake.ErrorBody("Country not supported", "request_forbidden", "unsupported_country_region_territory", "")}, true},
		{"408", openaifake.Failure{Status: 408, Body: "timeout"}, false},
		{"409", openaifake.Failure{Status: 409, Body: openaifake.ErrorBody("conflict", "", "", "")}, false},
		{"502 html", openaifake.Failure{Status: 502, Body: "<html>bad gateway</html>"}, false},
		{"500 empty", openaifake.Failure{Status: 500}, false},
		{"429 spend limit", openaifake.Failure{Status: 429, Body: openaifake.ErrorBody("limit", "insufficient_quota", "project_spend_limit_exceeded", "")}, true},
		{"x-should-retry false", openaifake.Failure{Status: 503, Header: http.Header{"X-Should-Retry": {"false"}}}, true},
		{"x-should-retry true", openaifake.Failure{Status: 400, Header: http.Header{"X-Should-Retry": {"true"}}}, false},
		{"numeric code", openaifake.Failure{Status: 400, Body: `{"error":{"message":"bad","type":"invalid_request_error","code":400,"param":null}}`}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.FailNext(1, tc.failure)
			_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
			require.Error(t, err)
			assert.Equal(t, tc.permanent, jobs.IsPermanent(err), "%v", err)
			var oe *OpenAIError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.failure.Status, oe.Status)
			assert.NotEmpty(t, oe.Message)
		})
	}
}

func TestOpenAIErrorText(t *testing.T) {
	var env struct{ Error *OpenAIError }
	require.NoError(t, json.Unmarshal([]byte(`{"error":{"message":"m","type":"t","code":429,"param":"p"}}`), &env))
	env.Error.Status = 429
	env.Error.RequestID = "req_1"
	assert.Equal(t, "status 429: t (code 429, param p, request req_1): m", env.Error.Error())
	assert.True(t, errors.Is(jobs.Permanent(env.Error), env.Error))
}

func TestOpenAIInvalidBaseURL(t *testing.T) {
	h := NewAITextGeneration(OpenAIConfig{BaseURL: "://bad", APIKey: aiTestKey})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.NotContains(t, err.Error(), aiTestKey)
}
