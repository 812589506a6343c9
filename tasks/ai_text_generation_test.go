package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const aiTestKey = "sk-test-0123456789abcdef"

func aiJob(payload string) *models.Job {
	return &models.Job{ID: 1, Type: TypeAITextGeneration, Payload: models.JSON(payload)}
}

func newTextFake(t *testing.T) (*openaifake.Server, *AITextGeneration) {
	t.Helper()
	fake := openaifake.New(t, aiTestKey)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, Timeout: 5 * time.Second})
	return fake, h
}

// requireFieldErrors asserts err is an invalid_payload ValidationError
// naming exactly fields.
func requireFieldErrors(t *testing.T, err error, fields ...string) {
	t.Helper()
	var verr *jobs.ValidationError
	require.ErrorAs(t, err, &verr)
	assert.Equal(t, "invalid_payload", verr.Code)
	var got []string
	for _, f := range verr.Fields {
		got = append(got, f.Field)
		assert.NotEmpty(t, f.Message)
	}
	assert.Equal(t, fields, got, "fields of %v", err)
}

func TestAITextGenerationSuccess(t *testing.T) {
	fake, h := newTextFake(t)
	fake.SetChatReply("Autumn leaves fall softly.", "stop")
	out, err := h.Handle(context.Background(), aiJob(
		`{"prompt": "Write a caption about autumn", "system": "You are terse.", "model": "gpt-4o", "maxTokens": 200, "temperature": 0.7}`))
	require.NoError(t, err)

	var res AITextGenerationResult
	require.NoError(t, json.Unmarshal(out, &res))
	assert.Equal(t, "Autumn leaves fall softly.", res.Text)
	assert.Equal(t, "gpt-4o-2024-07-18", res.Model)
	assert.Equal(t, "stop", res.FinishReason)
	assert.Positive(t, res.Usage.PromptTokens)
	assert.Equal(t, 4, res.Usage.CompletionTokens)
	assert.Equal(t, res.Usage.PromptTokens+res.Usage.CompletionTokens, res.Usage.TotalTokens)
	assert.JSONEq(t, `{"text":"Autumn leaves fall softly.","model":"gpt-4o-2024-07-18","finishReason":"stop",
		"usage":{"promptTokens":`+itoa(res.Usage.PromptTokens)+`,"completionTokens":4,"totalTokens":`+itoa(res.Usage.TotalTokens)+`}}`, string(out))

	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "POST", reqs[0].Method)
	assert.Equal(t, "/v1/chat/completions", reqs[0].Path)
	assert.True(t, reqs[0].Authorized)
	assert.Equal(t, "application/json", reqs[0].Header.Get("Content-Type"))
	assert.JSONEq(t, `{"model": "gpt-4o", "max_tokens": 200, "temperature": 0.7, "messages": [
		{"role": "system", "content": "You are terse."},
		{"role": "user", "content": "Write a caption about autumn"}]}`, string(reqs[0].Body))
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestAITextGenerationDefaults(t *testing.T) {
	fake := openaifake.New(t, aiTestKey)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL + "/", APIKey: aiTestKey, TextModel: "my-model",
		MaxTokensField: "max_completion_tokens"})
	assert.Equal(t, AITextTimeoutDefault+openAITimeoutMargin, h.Timeout())
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi", "maxTokens": 5}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"model": "my-model", "max_completion_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}`,
		string(fake.Requests()[0].Body))

	d := NewAITextGeneration(OpenAIConfig{})
	assert.Equal(t, OpenAIBaseURLDefault, d.cfg.BaseURL)
	assert.Equal(t, OpenAITextModelDefault, d.cfg.TextModel)
}

func TestAITextGenerationLengthIsSuccess(t *testing.T) {
	fake, h := newTextFake(t)
	fake.SetChatReply("Cut sh", "length")
	out, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi", "maxTokens": 2}`))
	require.NoError(t, err)
	assert.Contains(t, string(out), `"finishReason":"length"`)
}

func TestAITextGenerationTransientThenSuccess(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.RateLimited("7"))
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	var ra *jobs.RetryAfterError
	require.ErrorAs(t, err, &ra)
	assert.Equal(t, 7*time.Second, ra.After)
	assert.Contains(t, err.Error(), "rate_limit_exceeded")
	assert.Contains(t, err.Error(), "Rate limit reached")

	out, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.NoError(t, err)
	assert.Contains(t, string(out), "Hello from the fake.")
	assert.Equal(t, 2, fake.Calls())
}

func TestAITextGenerationServerErrorRetryable(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.ServerError())
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	var ra *jobs.RetryAfterError
	assert.False(t, errors.As(err, &ra), "no Retry-After: plain backoff")
	assert.Contains(t, err.Error(), "status 500")
}

func TestAITextGenerationPermanentError(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.BadRequest("Invalid value for 'temperature'.", "temperature"))
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "Invalid value for 'temperature'.")
	assert.Contains(t, err.Error(), "invalid_request_error")
	assert.Contains(t, err.Error(), "param temperature")
	var oe *OpenAIError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, 400, oe.Status)
	assert.Equal(t, "invalid_request_error", oe.Type)
	assert.Equal(t, "temperature", oe.Param)
}

func TestAITextGenerationQuotaIsPermanent(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.InsufficientQuota())
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "insufficient_quota")
}

func TestAITextGenerationWrongKeyIsPermanentAndRedacted(t *testing.T) {
	fake := openaifake.New(t, aiTestKey)
	wrong := "sk-wrong-secret-value"
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: wrong})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "invalid_api_key")

	// A provider that echoes the key: it is redacted.
	fake = openaifake.New(t, wrong)
	h = NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: wrong})
	fake.FailNext(1, openaifake.Failure{Status: 401, Body: openaifake.ErrorBody("Incorrect API key provided: "+wrong, "invalid_request_error", "invalid_api_key", "")})
	_, err = h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.NotContains(t, err.Error(), wrong)
	assert.Contains(t, err.Error(), "[redacted]")
}

// TestAITextGenerationKeyEchoedInAnyFormIsRedacted: the OpenAI client
// scrubs with secretfields.Scrub, so an echo of the key in another case or
// HTML-escaped is redacted too.
func TestAITextGenerationKeyEchoedInAnyFormIsRedacted(t *testing.T) {
	key := "sk-Wrong-<Secret>-Value"
	fake := openaifake.New(t, key)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: key})
	fake.FailNext(1, openaifake.Failure{Status: 401, Body: openaifake.ErrorBody(
		"Incorrect API key provided: "+strings.ToUpper(key)+" (<p>"+html.EscapeString(key)+"</p>)", "invalid_request_error", "invalid_api_key", "")})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "Incorrect API key provided: [redacted] (<p>[redacted]</p>)")
	assert.NotContains(t, strings.ToLower(err.Error()), "secret")
}

func TestAITextGenerationMissingKey(t *testing.T) {
	fake := openaifake.New(t, aiTestKey)
	h := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "OPENAI_API_KEY")
	assert.Zero(t, fake.Calls())
}

func TestAITextGenerationMalformedResponse(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.Malformed())
	fake.FailNext(1, openaifake.Failure{Status: 200, Body: `{"id":"x","choices":[]}`})
	for range 2 {
		_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
		require.Error(t, err)
		assert.False(t, jobs.IsPermanent(err), "a malformed 200 is retried: %v", err)
		assert.Contains(t, err.Error(), "malformed response")
	}
}

func TestAITextGenerationRefusalAndContentFilter(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.Failure{Body: `{"model":"m","choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`})
	fake.FailNext(1, openaifake.Failure{Body: `{"model":"m","choices":[{"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}`})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "I can't help with that.")
	_, err = h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "content filter")
}

func TestAITextGenerationTimeout(t *testing.T) {
	fake, h := newTextFake(t)
	fake.FailNext(1, openaifake.Hang())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Handle(ctx, aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.Less(t, time.Since(start), 3*time.Second)
	assert.False(t, jobs.IsPermanent(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "timed out")
	assert.NotContains(t, err.Error(), aiTestKey)

	// The handler's own Timeout fires too.
	fake.FailNext(1, openaifake.Hang())
	h2 := NewAITextGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, Timeout: 100 * time.Millisecond})
	_, err = h2.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAITextGenerationConnectionRefusedRetryable(t *testing.T) {
	fake, _ := newTextFake(t)
	base := fake.URL
	fake.Close()
	h := NewAITextGeneration(OpenAIConfig{BaseURL: base, APIKey: aiTestKey, Timeout: 2 * time.Second})
	_, err := h.Handle(context.Background(), aiJob(`{"prompt": "hi"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
}

func TestAITextGenerationValidatePayload(t *testing.T) {
	h := NewAITextGeneration(OpenAIConfig{})
	long := `"` + strings.Repeat("é", AITextMaxPromptChars+1) + `"`
	for _, tc := range []struct {
		name, payload string
		fields        []string
	}{
		{"missing prompt", `{}`, []string{"prompt"}},
		{"null prompt", `{"prompt": null}`, []string{"prompt"}},
		{"blank prompt", `{"prompt": "  "}`, []string{"prompt"}},
		{"prompt not string", `{"prompt": 5}`, []string{"prompt"}},
		{"prompt too long", `{"prompt": ` + long + `}`, []string{"prompt"}},
		{"system too long", `{"prompt": "x", "system": ` + long + `}`, []string{"system"}},
		{"system not string", `{"prompt": "x", "system": []}`, []string{"system"}},
		{"model empty", `{"prompt": "x", "model": ""}`, []string{"model"}},
		{"model with space", `{"prompt": "x", "model": "gpt 4"}`, []string{"model"}},
		{"model not string", `{"prompt": "x", "model": 4}`, []string{"model"}},
		{"maxTokens zero", `{"prompt": "x", "maxTokens": 0}`, []string{"maxTokens"}},
		{"maxTokens too big", `{"prompt": "x", "maxTokens": 32769}`, []string{"maxTokens"}},
		{"maxTokens fraction", `{"prompt": "x", "maxTokens": 1.5}`, []string{"maxTokens"}},
		{"maxTokens string", `{"prompt": "x", "maxTokens": "10"}`, []string{"maxTokens"}},
		{"temperature negative", `{"prompt": "x", "temperature": -0.1}`, []string{"temperature"}},
		{"temperature too high", `{"prompt": "x", "temperature": 2.01}`, []string{"temperature"}},
		{"temperature string", `{"prompt": "x", "temperature": "hot"}`, []string{"temperature"}},
		{"unknown field", `{"prompt": "x", "max_tokens": 5}`, []string{"max_tokens"}},
		{"several", `{"temperature": 3, "maxTokens": -1, "extra": true}`, []string{"extra", "prompt", "maxTokens", "temperature"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireFieldErrors(t, h.ValidatePayload(json.RawMessage(tc.payload)), tc.fields...)
		})
	}
	for _, bad := range []string{``, `null`, `[]`, `"x"`, `{`} {
		var verr *jobs.ValidationError
		require.ErrorAs(t, h.ValidatePayload(json.RawMessage(bad)), &verr, bad)
		assert.Equal(t, "invalid_payload", verr.Code)
	}
	for _, good := range []string{
		`{"prompt": "x"}`,
		`{"prompt": "x", "system": null, "model": null, "maxTokens": null, "temperature": null}`,
		`{"prompt": "x", "system": "s", "model": "accounts/fireworks/models/llama-v3", "maxTokens": 32768, "temperature": 2}`,
		`{"prompt": "x", "maxTokens": 1, "temperature": 0}`,
		`{"prompt": "x", "maxTokens": 1e3}`,
	} {
		assert.NoError(t, h.ValidatePayload(json.RawMessage(good)), good)
	}

	// Handle refuses a bad payload permanently without calling out.
	fake, h2 := newTextFake(t)
	_, err := h2.Handle(context.Background(), aiJob(`{"prompt": ""}`))
	assert.True(t, jobs.IsPermanent(err))
	assert.Zero(t, fake.Calls())
}

func FuzzAITextGenerationPayload(f *testing.F) {
	for _, seed := range []string{
		`{"prompt": "x"}`,
		`{"prompt": "x", "system": "s", "model": "gpt-4o", "maxTokens": 100, "temperature": 1.5}`,
		`{"prompt": "", "maxTokens": 0}`,
		`{"prompt": "x", "maxTokens": 1e400}`,
		`{"prompt": "x", "temperature": NaN}`,
		`{"prompt": "x", "maxTokens": 9223372036854775808}`,
		`{"prompt": "x", "model": "a\u0000b"}`,
		`{"prompt": "x", "prompt": 1}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7}`,
		`[]`, `null`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	h := NewAITextGeneration(OpenAIConfig{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := parseAITextPayload(payload)
		if err != nil {
			var verr *jobs.ValidationError
			if !errors.As(err, &verr) || verr.Code != "invalid_payload" {
				t.Fatalf("want an invalid_payload ValidationError, got %#v", err)
			}
			if h.ValidatePayload(payload) == nil {
				t.Fatal("ValidatePayload disagrees with parse")
			}
			return
		}
		if strings.TrimSpace(p.Prompt) == "" {
			t.Fatal("accepted an empty prompt")
		}
		if p.MaxTokens != nil && (*p.MaxTokens < 1 || *p.MaxTokens > AITextMaxTokens) {
			t.Fatalf("accepted maxTokens %d", *p.MaxTokens)
		}
		if p.Temperature != nil && !(*p.Temperature >= 0 && *p.Temperature <= 2) {
			t.Fatalf("accepted temperature %v", *p.Temperature)
		}
		if strings.ContainsAny(p.Model, " \t\n\x00") {
			t.Fatalf("accepted model %q", p.Model)
		}
	})
}
