package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/jobs/secretfields"
)

// Defaults of the OpenAI-compatible job types (ai_text_generation and
// ai_image_generation).
const (
	// OpenAIBaseURLDefault is the API base; paths such as
	// "/chat/completions" are appended to it.
	OpenAIBaseURLDefault = "https://api.openai.com/v1"
	// OpenAITextModelDefault is the chat model used when neither the
	// payload nor the config names one.
	OpenAITextModelDefault = "gpt-4o-mini"
	// OpenAIImageModelDefault is the image model used when neither the
	// payload nor the config names one. dall-e-2 accepts n up to 10 and
	// the sizes 256x256, 512x512 and 1024x1024; dall-e-3 accepts n=1 and
	// 1024x1024, 1024x1792, 1792x1024 (the provider refuses other
	// combinations with a 400, which fails the job for good).
	OpenAIImageModelDefault = "dall-e-2"
	// AITextTimeoutDefault bounds one ai_text_generation run.
	AITextTimeoutDefault = 60 * time.Second
	// AIImageTimeoutDefault bounds one ai_image_generation run.
	AIImageTimeoutDefault = 120 * time.Second
)

// Internal limits of the OpenAI client.
const (
	openAIMaxErrorBody  = 64 << 10
	openAIMaxTextBody   = 8 << 20
	openAIMaxImageBody  = 96 << 20 // several base64 images
	openAIMaxRetryAfter = time.Hour
	openAITimeoutMargin = 5 * time.Second
)

// errOpenAINoAPIKey is returned at run time when no key is configured, so
// that the server still starts without one.
var errOpenAINoAPIKey = errors.New("OpenAI API key is not configured (set OPENAI_API_KEY)")

// OpenAIConfig configures NewAITextGeneration and NewAIImageGeneration.
type OpenAIConfig struct {
	// BaseURL is the API base, ending in the version, such as
	// "https://api.openai.com/v1" (the default) or a test fake's URL.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer …". When empty, jobs fail
	// permanently at run time with a clear message. It never appears in
	// an error.
	APIKey string
	// TextModel is the default chat model (OpenAITextModelDefault).
	TextModel string
	// ImageModel is the default image model (OpenAIImageModelDefault).
	ImageModel string
	// MaxTokensField is the request field that carries the payload's
	// maxTokens: "max_tokens" (the default, understood by most
	// OpenAI-compatible servers) or "max_completion_tokens" (required by
	// OpenAI's o-series models).
	MaxTokensField string
	// Timeout bounds one run of a job (the HTTP call and reading the
	// answer). Defaults to AITextTimeoutDefault (60s) for text and
	// AIImageTimeoutDefault (120s) for images when zero or negative.
	Timeout time.Duration
	// HTTPClient sends the requests. Defaults to a client with transport
	// timeouts; the per-job deadline comes from the context.
	HTTPClient *http.Client
	// TracerProvider, when set, makes each request a client span of the
	// attempt's trace, sending its traceparent.
	TracerProvider trace.TracerProvider
	// Images stores images the provider returns as base64 (b64_json), so
	// that the result can carry a URL. When nil, ai_image_generation asks
	// for URLs (dall-e models) and fails permanently if it still gets
	// base64 (gpt-image models).
	Images ImageStore
	// Clock gives the time for Retry-After dates. Defaults to
	// jobs.SystemClock.
	Clock jobs.Clock
	// ReportFlowPause pauses a flow key when an answer says its model's
	// limit is used up (openai_signals.go). Defaults to
	// jobs.ReportFlowPause; tests may capture the pauses instead.
	ReportFlowPause func(ctx context.Context, key string, d time.Duration, reason string) error
}

func (c OpenAIConfig) withDefaults(timeout time.Duration) OpenAIConfig {
	c.BaseURL = strings.TrimRight(strings.TrimSpace(c.BaseURL), "/")
	if c.BaseURL == "" {
		c.BaseURL = OpenAIBaseURLDefault
	}
	c.APIKey = strings.TrimSpace(c.APIKey)
	if c.TextModel == "" {
		c.TextModel = OpenAITextModelDefault
	}
	if c.ImageModel == "" {
		c.ImageModel = OpenAIImageModelDefault
	}
	if c.MaxTokensField == "" {
		c.MaxTokensField = "max_tokens"
	}
	if c.Timeout <= 0 {
		c.Timeout = timeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newOpenAIHTTPClient(c.Timeout)
	}
	c.HTTPClient = tracing.Client(c.HTTPClient, c.TracerProvider)
	c.TracerProvider = nil // wrapped once, even if defaulted again
	if c.Clock == nil {
		c.Clock = jobs.SystemClock{}
	}
	if c.ReportFlowPause == nil {
		c.ReportFlowPause = jobs.ReportFlowPause
	}
	return c
}

func newOpenAIHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = timeout
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: t, Timeout: timeout + openAITimeoutMargin}
}

// openAIClient posts JSON to an OpenAI-compatible API and classifies
// failures into jobs.Permanent, jobs.RetryAfter and plain (retryable)
// errors.
type openAIClient struct {
	base  string
	key   string
	http  *http.Client
	clock jobs.Clock
	// keyID names key in flow keys (OpenAIKeyID).
	keyID  string
	report func(ctx context.Context, key string, d time.Duration, reason string) error
}

func newOpenAIClient(cfg OpenAIConfig) *openAIClient {
	return &openAIClient{base: cfg.BaseURL, key: cfg.APIKey, http: cfg.HTTPClient, clock: cfg.Clock,
		keyID: OpenAIKeyID(cfg.APIKey), report: cfg.ReportFlowPause}
}

// OpenAIError is the error body of an OpenAI-compatible API,
// {"error":{"message","type","param","code"}}, with the HTTP status.
type OpenAIError struct {
	Status    int    `json:"-"`
	Message   string `json:"message"`
	Type      string `json:"type"`
	Param     string `json:"param"`
	Code      string `json:"code"`
	RequestID string `json:"-"`
}

// Error returns "status 400: invalid_request_error (code …, param …): message".
func (e *OpenAIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "status %d", e.Status)
	if e.Type != "" {
		b.WriteString(": " + e.Type)
	}
	var details []string
	if e.Code != "" && e.Code != e.Type {
		details = append(details, "code "+e.Code)
	}
	if e.Param != "" {
		details = append(details, "param "+e.Param)
	}
	if e.RequestID != "" {
		details = append(details, "request "+e.RequestID)
	}
	if len(details) > 0 {
		b.WriteString(" (" + strings.Join(details, ", ") + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// UnmarshalJSON accepts code and param as strings, numbers or null.
func (e *OpenAIError) UnmarshalJSON(b []byte) error {
	var raw struct {
		Message json.RawMessage `json:"message"`
		Type    json.RawMessage `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	e.Message, e.Type, e.Param, e.Code = jsonText(raw.Message), jsonText(raw.Type), jsonText(raw.Param), jsonText(raw.Code)
	return nil
}

func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// openAIBillingCodes are 429 codes that waiting cannot fix.
var openAIBillingCodes = map[string]bool{
	"insufficient_quota":                true,
	"credit_balance_exhausted":          true,
	"organization_spend_limit_exceeded": true,
	"project_spend_limit_exceeded":      true,
	"organization_usage_limit_exceeded": true,
	"billing_hard_limit_reached":        true,
}

// post sends body as JSON to base+path and decodes a 2xx answer into out.
// op names the job type in errors.
func (c *openAIClient) post(ctx context.Context, op, path string, body any, out any, maxBody int64) error {
	what := op + ": POST " + path
	if c.key == "" {
		return jobs.Permanent(fmt.Errorf("%s: %w", op, errOpenAINoAPIKey))
	}
	buf, err := json.Marshal(body)
	if err != nil {
		return jobs.Permanent(fmt.Errorf("%s: encode request: %w", what, err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(buf))
	if err != nil {
		return jobs.Permanent(fmt.Errorf("%s: invalid OPENAI_BASE_URL: %w", what, c.redact(err)))
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		return c.transportError(ctx, what, err)
	}
	defer resp.Body.Close()

	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	limit := int64(openAIMaxErrorBody)
	if ok {
		limit = maxBody
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return c.transportError(ctx, what, err)
	}
	if !ok {
		return c.rateSignals(ctx, body, resp, c.statusError(what, resp, data))
	}
	_ = c.rateSignals(ctx, body, resp, nil)
	if int64(len(data)) > limit {
		return jobs.Permanent(fmt.Errorf("%s: response larger than %d bytes", what, limit))
	}
	if err := json.Unmarshal(data, out); err != nil {
		// A malformed 200 is a provider bug or a truncated answer: retried
		// with backoff, bounded by the job's MaxAttempts.
		return fmt.Errorf("%s: malformed response (status %d): %w", what, resp.StatusCode, err)
	}
	return nil
}

// transportError classifies a failure to send or read: all are retryable.
func (c *openAIClient) transportError(ctx context.Context, what string, err error) error {
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("%s: timed out: %w", what, context.DeadlineExceeded)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: cancelled: %w", what, context.Canceled)
	case errors.As(err, &nerr) && nerr.Timeout():
		return fmt.Errorf("%s: timed out: %w", what, c.redact(err))
	}
	return fmt.Errorf("%s: %w", what, c.redact(err))
}

// statusError classifies a non-2xx answer.
func (c *openAIClient) statusError(what string, resp *http.Response, body []byte) error {
	oe := &OpenAIError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	var env struct {
		Error *OpenAIError `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error != nil {
		oe.Message, oe.Type, oe.Param, oe.Code = env.Error.Message, env.Error.Type, env.Error.Param, env.Error.Code
	} else {
		oe.Message = strings.TrimSpace(string(bytes.ToValidUTF8(body[:min(len(body), 300)], nil)))
		if oe.Message == "" {
			oe.Message = http.StatusText(resp.StatusCode)
		}
	}
	oe.Message = c.redactString(oe.Message)
	err := fmt.Errorf("%s: %w", what, oe)

	code := resp.StatusCode
	retry := code == http.StatusRequestTimeout || code == http.StatusConflict ||
		code == http.StatusTooManyRequests || code >= 500
	if code == http.StatusTooManyRequests && (openAIBillingCodes[oe.Code] || openAIBillingCodes[oe.Type]) {
		retry = false
	}
	switch strings.ToLower(resp.Header.Get("X-Should-Retry")) {
	case "true":
		retry = true
	case "false":
		retry = false
	}
	if !retry {
		return jobs.Permanent(err)
	}
	if d, ok := openAIRetryDelay(resp.Header, c.clock.Now()); ok {
		return jobs.RetryAfter(err, d)
	}
	return err
}

// openAIRetryDelay reads retry-after-ms (milliseconds), else Retry-After
// (seconds or an HTTP date), as a delay between 0 and openAIMaxRetryAfter.
func openAIRetryDelay(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 { // false for NaN
			if ms > float64(openAIMaxRetryAfter/time.Millisecond) {
				return openAIMaxRetryAfter, true
			}
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if !(secs >= 0) { // negative or NaN
			return 0, false
		}
		if secs > openAIMaxRetryAfter.Seconds() {
			return openAIMaxRetryAfter, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), openAIMaxRetryAfter), true
}

// redact removes the API key from an error's text, in case a provider or
// transport echoes it.
func (c *openAIClient) redact(err error) error {
	if err == nil {
		return nil
	}
	if msg := c.redactString(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// redactString removes the API key from text, in every form
// secretfields.Scrub knows (escaped, any case, HTML-escaped).
func (c *openAIClient) redactString(s string) string {
	return secretfields.Scrub(s, []string{c.key})
}

// aiPayload holds the fields of a JSON object payload while it is checked.
type aiPayload struct {
	fields   map[string]json.RawMessage
	problems []jobs.FieldError
}

// parseAIPayload decodes a JSON object and reports its unknown fields.
func parseAIPayload(payload []byte, jobType, example string, known ...string) (*aiPayload, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return nil, &jobs.ValidationError{
			Code:    "invalid_payload",
			Message: jobType + " payload must be a JSON object such as " + example,
		}
	}
	p := &aiPayload{fields: fields}
	var unknown []string
	for name := range fields {
		if !slices.Contains(known, name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for i, name := range unknown {
		if i == 5 {
			p.fail("(more)", fmt.Sprintf("%d more unknown fields", len(unknown)-5))
			break
		}
		p.fail(name, "unknown field; allowed: "+strings.Join(known, ", "))
	}
	return p, nil
}

func (p *aiPayload) fail(field, msg string) {
	p.problems = append(p.problems, jobs.FieldError{Field: field, Message: msg})
}

// raw returns a field's value, or false when it is absent or null.
func (p *aiPayload) raw(name string) (json.RawMessage, bool) {
	v, ok := p.fields[name]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

// str reads an optional string field of at most maxRunes characters.
func (p *aiPayload) str(name string, required bool, maxRunes int) string {
	v, ok := p.raw(name)
	if !ok {
		if required {
			p.fail(name, "is required")
		}
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		p.fail(name, "must be a string")
		return ""
	}
	switch {
	case required && strings.TrimSpace(s) == "":
		p.fail(name, "must not be empty")
	case utf8.RuneCountInString(s) > maxRunes:
		p.fail(name, fmt.Sprintf("must be at most %d characters", maxRunes))
	}
	return s
}

// model reads the optional model field: a short name without spaces.
func (p *aiPayload) model() string {
	before := len(p.problems)
	s := p.str("model", false, 200)
	if len(p.problems) > before {
		return ""
	}
	if _, ok := p.raw("model"); ok && strings.TrimSpace(s) == "" {
		p.fail("model", "must not be empty")
		return ""
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || unicode.IsSpace(r) {
			p.fail("model", "must be a model name without spaces or control characters, such as gpt-4o-mini")
			return ""
		}
	}
	return s
}

// integer reads an optional integer field between lo and hi.
func (p *aiPayload) integer(name string, lo, hi int64) (int64, bool) {
	v, ok := p.raw(name)
	if !ok {
		return 0, false
	}
	var f float64
	if json.Unmarshal(v, &f) != nil || f != math.Trunc(f) {
		p.fail(name, "must be an integer")
		return 0, false
	}
	if f < float64(lo) || f > float64(hi) {
		p.fail(name, fmt.Sprintf("must be between %d and %d", lo, hi))
		return 0, false
	}
	n := int64(f)
	return n, true
}

// number reads an optional number field between lo and hi.
func (p *aiPayload) number(name string, lo, hi float64) (float64, bool) {
	v, ok := p.raw(name)
	if !ok {
		return 0, false
	}
	var f float64
	if json.Unmarshal(v, &f) != nil {
		p.fail(name, "must be a number")
		return 0, false
	}
	if !(f >= lo && f <= hi) {
		p.fail(name, fmt.Sprintf("must be between %g and %g", lo, hi))
		return 0, false
	}
	return f, true
}

// err returns the problems as a *jobs.ValidationError, or nil.
func (p *aiPayload) err(jobType string) error {
	if len(p.problems) == 0 {
		return nil
	}
	return &jobs.ValidationError{Code: "invalid_payload", Message: "invalid " + jobType + " payload", Fields: p.problems}
}
