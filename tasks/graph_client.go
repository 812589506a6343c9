package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
)

// Defaults of GraphConfig.
const (
	// GraphBaseURLDefault is the Graph API host (GRAPH_API_BASE_URL).
	GraphBaseURLDefault = "https://graph.facebook.com"
	// GraphVersionDefault is the Graph API version (GRAPH_API_VERSION).
	// v21.0 expires 2027-01-21; v25.0 is supported until 2028-07-29.
	GraphVersionDefault = "v25.0"
	// GraphPollIntervalDefault is the wait between container status polls.
	GraphPollIntervalDefault = 2 * time.Second
	// GraphMaxPollsDefault bounds the status polls of one container in one
	// attempt.
	GraphMaxPollsDefault = 30
	// GraphTimeoutDefault bounds one run of a social publishing job.
	GraphTimeoutDefault = 3 * time.Minute
	// GraphRequestTimeoutDefault bounds one HTTP request of the default
	// client.
	GraphRequestTimeoutDefault = 30 * time.Second
)

const (
	graphMaxBodyBytes = 1 << 20
	// graphRateLimitWait is the retry delay asked for after a Graph rate
	// limit error that carries no Retry-After header.
	graphRateLimitWait = time.Minute
	// graphQuotaWait is the retry delay after the daily publishing quota
	// error (2207042).
	graphQuotaWait = time.Hour
)

// GraphConfig configures the social publishing job types.
type GraphConfig struct {
	// BaseURL is the Graph API host, without the version. Defaults to
	// GraphBaseURLDefault.
	BaseURL string
	// Version is the path prefix such as "v25.0". Defaults to
	// GraphVersionDefault.
	Version string
	// HTTPClient makes the requests. Defaults to a client with a 30s
	// timeout and transport timeouts; never http.DefaultClient.
	HTTPClient *http.Client
	// TracerProvider, when set, makes each request a client span of the
	// attempt's trace, sending its traceparent.
	TracerProvider trace.TracerProvider
	// PollInterval is the wait between status polls of an Instagram
	// container. Defaults to GraphPollIntervalDefault (2s).
	PollInterval time.Duration
	// MaxPolls bounds the status polls of one container in one attempt;
	// when it is still IN_PROGRESS after them, the attempt fails and is
	// retried (resuming from the checkpoint). Defaults to 30.
	MaxPolls int
	// Timeout bounds one run of a job. Defaults to GraphTimeoutDefault.
	Timeout time.Duration
	// SaveCheckpoint stores the job's progress. Defaults to
	// jobs.SaveCheckpoint; tests may capture the checkpoints instead.
	SaveCheckpoint func(ctx context.Context, v any) error
	// ReportFlowPause pauses a flow key when an answer says it is near its
	// limit (graph_signals.go). Defaults to jobs.ReportFlowPause; tests
	// may capture the pauses instead.
	ReportFlowPause func(ctx context.Context, key string, d time.Duration, reason string) error
}

func (c GraphConfig) withDefaults() GraphConfig {
	if c.BaseURL == "" {
		c.BaseURL = GraphBaseURLDefault
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.Version == "" {
		c.Version = GraphVersionDefault
	}
	c.Version = strings.Trim(c.Version, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{
			Timeout: GraphRequestTimeoutDefault,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
				TLSHandshakeTimeout:   10 * time.Second,
				ResponseHeaderTimeout: GraphRequestTimeoutDefault,
				IdleConnTimeout:       90 * time.Second,
				MaxIdleConnsPerHost:   8,
			},
		}
	}
	c.HTTPClient = tracing.Client(c.HTTPClient, c.TracerProvider)
	c.TracerProvider = nil // wrapped once, even if defaulted again
	if c.PollInterval <= 0 {
		c.PollInterval = GraphPollIntervalDefault
	}
	if c.MaxPolls <= 0 {
		c.MaxPolls = GraphMaxPollsDefault
	}
	if c.Timeout <= 0 {
		c.Timeout = GraphTimeoutDefault
	}
	if c.SaveCheckpoint == nil {
		c.SaveCheckpoint = jobs.SaveCheckpoint
	}
	if c.ReportFlowPause == nil {
		c.ReportFlowPause = jobs.ReportFlowPause
	}
	return c
}

// GraphError is an error answer of the Graph API. Its text carries Graph's
// message, code and subcode, never the access token.
type GraphError struct {
	// Status is the HTTP status.
	Status    int    `json:"-"`
	Message   string `json:"message"`
	Type      string `json:"type"`
	Code      int    `json:"code"`
	Subcode   int    `json:"error_subcode"`
	UserTitle string `json:"error_user_title"`
	UserMsg   string `json:"error_user_msg"`
	Transient bool   `json:"is_transient"`
	FBTraceID string `json:"fbtrace_id"`
}

func (e *GraphError) Error() string {
	return fmt.Sprintf("graph: %s (code %d, subcode %d)", e.Message, e.Code, e.Subcode)
}

// Retryable reports whether the error is transient: Graph says so, or its
// code or subcode is one of the transient ones, or (without a code) the
// status is 429 or 5xx.
func (e *GraphError) Retryable() bool {
	if e.Transient {
		return true
	}
	switch e.Subcode {
	case 2207001, 2207003, 2207032, 2207053, 2207027, 2207042:
		return true
	case 2207051, 2207004:
		return false
	}
	switch e.Code {
	case 1, 2, 4, 17, 32, 341, 613, -1, -2:
		return true
	case 0:
		return e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	return e.Code >= 80001 && e.Code <= 80014
}

// rateLimited reports whether the error is a rate or quota limit, which
// asks for a wait rather than a quick retry.
func (e *GraphError) rateLimited() bool {
	switch e.Code {
	case 4, 17, 32, 341, 613:
		return true
	}
	return e.Code >= 80001 && e.Code <= 80014
}

var errGraphResponse = errors.New("graph: unreadable response")

// errGraphNotSent marks a transport error that happened before the request
// was written to a connection (dial, DNS, refused connection, TLS
// handshake): Graph never saw the request, so it certainly did nothing.
// Any other transport error after a request was written (timeout,
// connection reset, EOF on the answer) leaves the outcome unknown.
var errGraphNotSent = errors.New("request never sent")

// graphSendTrace records, through net/http/httptrace, whether a request
// got a connection and was written to it in full.
type graphSendTrace struct {
	conn, wrote atomic.Bool
}

// attach returns req with the trace hooks in its context.
func (s *graphSendTrace) attach(req *http.Request) *http.Request {
	trace := &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { s.conn.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				s.wrote.Store(true)
			}
		},
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
}

// neverSent reports whether a request that failed with err certainly never
// reached Graph. A request written in full may have. Otherwise: with the
// standard transport (traced), no connection means nothing was sent; a
// connection without a complete write is not trusted (a write error may
// follow bytes that arrived). With another transport, whose hooks may not
// fire, only the error tells: a dial, DNS or proxy-connect error, or a
// refused connection.
func (s *graphSendTrace) neverSent(err error, traced bool) bool {
	if s.wrote.Load() {
		return false
	}
	if traced && !s.conn.Load() {
		return true
	}
	return isDialError(err)
}

// isDialError reports whether err happened while connecting, before any
// request could be written.
func isDialError(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && (opErr.Op == "dial" || opErr.Op == "proxyconnect") {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// graphClient calls the Graph API with one access token, for the account
// whose flow key is key (ig:… or fb:…).
type graphClient struct {
	cfg   GraphConfig
	token string
	key   string
}

// scrubText removes the client's access token from text, in every form
// secretfields.Scrub knows (escaped, any case, HTML-escaped).
func (c *graphClient) scrubText(text string) string {
	return secretfields.Scrub(text, []string{c.token})
}

var graphAccessTokenParamRE = regexp.MustCompile(`access_token=[^&\s"]*`)

// graphScrubbedError wraps an error whose text was scrubbed, keeping Unwrap so
// that errors.Is(err, context.DeadlineExceeded) still works.
type graphScrubbedError struct {
	msg string
	err error
}

func (e *graphScrubbedError) Error() string { return e.msg }
func (e *graphScrubbedError) Unwrap() error { return e.err }

func (c *graphClient) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := graphAccessTokenParamRE.ReplaceAllString(c.scrubText(err.Error()), "access_token="+secretfields.Redacted)
	if msg == err.Error() {
		return err
	}
	return &graphScrubbedError{msg: msg, err: err}
}

// traced reports whether the client's transport is net/http's own (under
// the tracing's, if any: it keeps the request's httptrace hooks), whose
// httptrace hooks always fire.
func (c *graphClient) traced() bool {
	switch tracing.BaseTransport(c.cfg.HTTPClient.Transport).(type) {
	case nil, *http.Transport:
		return true
	}
	return false
}

// endpoint returns the URL of a Graph path such as "123/media".
func (c *graphClient) endpoint(path string) string {
	return c.cfg.BaseURL + "/" + c.cfg.Version + "/" + strings.TrimLeft(path, "/")
}

// post sends a form-encoded POST, with the token as the access_token form
// field, and decodes the JSON answer into out.
func (c *graphClient) post(ctx context.Context, what, path string, form url.Values, out any) error {
	body := url.Values{}
	for k, v := range form {
		body[k] = v
	}
	body.Set("access_token", c.token)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint(path), strings.NewReader(body.Encode()))
	if err != nil {
		return jobs.Permanent(c.scrub(fmt.Errorf("graph: %s: %w", what, err)))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req, what, out)
}

// get sends a GET with the token in the Authorization header (not in the
// URL, which may be logged) and decodes the JSON answer into out.
func (c *graphClient) get(ctx context.Context, what, path string, query url.Values, out any) error {
	u := c.endpoint(path)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return jobs.Permanent(c.scrub(fmt.Errorf("graph: %s: %w", what, err)))
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return c.do(req, what, out)
}

// do sends req and decodes the answer. A transport error is retried; it
// wraps errGraphNotSent when the request certainly never reached Graph.
func (c *graphClient) do(req *http.Request, what string, out any) error {
	req.Header.Set("Accept", "application/json")
	var trace graphSendTrace
	resp, err := c.cfg.HTTPClient.Do(trace.attach(req))
	if err != nil {
		if trace.neverSent(err, c.traced()) {
			return c.scrub(fmt.Errorf("graph: %s: %w: %w", what, errGraphNotSent, err))
		}
		// Timeouts, resets: the request may have reached Graph.
		return c.scrub(fmt.Errorf("graph: %s: %w", what, err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, graphMaxBodyBytes+1))
	if err != nil {
		return c.scrub(fmt.Errorf("graph: %s: read response: %w", what, err))
	}
	if len(raw) > graphMaxBodyBytes {
		return fmt.Errorf("graph: %s: %w: more than %d bytes", what, errGraphResponse, graphMaxBodyBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return c.readSignals(req.Context(), resp.Header, c.classify(what, resp, raw))
	}
	// Graph can also answer 200 with an error object.
	var probe struct {
		Error *GraphError `json:"error"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.Error != nil && (probe.Error.Message != "" || probe.Error.Code != 0) {
		return c.readSignals(req.Context(), resp.Header, c.classify(what, resp, raw))
	}
	_ = c.readSignals(req.Context(), resp.Header, nil)
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("graph: %s: %w (HTTP %d, %d bytes): %v", what, errGraphResponse, resp.StatusCode, len(raw), err)
	}
	return nil
}

// classify turns an error answer into a retryable, rate-limited or
// permanent error.
func (c *graphClient) classify(what string, resp *http.Response, raw []byte) error {
	var body struct {
		Error *GraphError `json:"error"`
	}
	var ge *GraphError
	if json.Unmarshal(raw, &body) == nil && body.Error != nil {
		ge = body.Error
		ge.Status = resp.StatusCode
		ge.Message = c.scrubText(ge.Message)
		ge.UserMsg = c.scrubText(ge.UserMsg)
		ge.UserTitle = c.scrubText(ge.UserTitle)
		if ge.Message == "" {
			ge.Message = what + ": " + resp.Status
		}
	} else {
		ge = &GraphError{Status: resp.StatusCode, Message: what + ": unexpected response " + resp.Status}
	}
	retryAfter, hasRetryAfter := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	switch {
	case !ge.Retryable():
		return jobs.Permanent(ge)
	case hasRetryAfter:
		return jobs.RetryAfter(ge, retryAfter)
	case ge.Subcode == 2207042:
		return jobs.RetryAfter(ge, graphQuotaWait)
	case ge.rateLimited():
		return jobs.RetryAfter(ge, graphRateLimitWait)
	}
	return ge
}

// graphSleep waits d or until ctx is done.
func graphSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Payload checks shared by the social publishing types.

var graphIDRE = regexp.MustCompile(`^[0-9]{1,32}$`)

const (
	graphMaxTokenLength = 4096
	graphMaxURLLength   = 2048
	graphMaxImages      = 10
)

// checkGraphID checks an id used in a Graph path.
func checkGraphID(v string) string {
	if !graphIDRE.MatchString(v) {
		return "must be a numeric Graph id"
	}
	return ""
}

// graphCheckToken checks a token without ever quoting it.
func graphCheckToken(v string) string {
	switch {
	case strings.TrimSpace(v) == "":
		return "is required"
	case len(v) > graphMaxTokenLength:
		return fmt.Sprintf("must be at most %d characters", graphMaxTokenLength)
	case strings.ContainsAny(v, " \t\r\n"):
		return "must not contain whitespace"
	}
	return ""
}

// graphCheckURL checks a public image URL that Meta will fetch.
func graphCheckURL(v string, httpOK bool) string {
	if len(v) > graphMaxURLLength {
		return fmt.Sprintf("must be at most %d characters", graphMaxURLLength)
	}
	u, err := url.Parse(v)
	switch {
	case strings.TrimSpace(v) == "":
		return "must not be empty"
	case err != nil || !u.IsAbs() || u.Host == "" || u.Hostname() == "":
		return "must be an absolute URL"
	case u.Scheme != "https" && !(httpOK && u.Scheme == "http"):
		if httpOK {
			return "must be an http or https URL"
		}
		return "must be an https URL"
	case u.User != nil:
		return "must not carry user information"
	}
	return ""
}

// decodeGraphPayload decodes a JSON object into the pointers of known, reporting unknown fields and
// fields of the wrong type as field errors.
func decodeGraphPayload(payload []byte, known map[string]any, example string) ([]jobs.FieldError, *jobs.ValidationError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return nil, &jobs.ValidationError{Code: "invalid_payload", Message: "payload must be a JSON object such as " + example}
	}
	var problems []jobs.FieldError
	var unknown []string
	for name := range fields {
		if _, ok := known[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	if len(unknown) > maxUnknownFields {
		unknown = unknown[:maxUnknownFields]
	}
	for _, name := range unknown {
		problems = append(problems, jobs.FieldError{Field: name, Message: "unknown field"})
	}
	for _, name := range slices.Sorted(maps.Keys(known)) {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, known[name]); err != nil {
			msg := "has the wrong type"
			switch known[name].(type) {
			case *string:
				msg = "must be a string"
			case *[]string:
				msg = "must be an array of strings"
			}
			problems = append(problems, jobs.FieldError{Field: name, Message: msg})
		}
	}
	return problems, nil
}

// scrubKeepClass removes the token from an error's text, should any path
// have let it in, keeping the error's class (Permanent, RetryAfter).
func (c *graphClient) scrubKeepClass(err error) error {
	if err == nil || c.token == "" {
		return err
	}
	msg := c.scrubText(err.Error())
	if msg == err.Error() {
		return err
	}
	return &graphScrubbedError{msg: msg, err: err}
}

// runGraphJob is the shared body of the Graph publishing handlers: decode
// and check the payload, load the checkpoint, run the publish with a
// client holding the job's token under the configured timeout, and return
// the result as JSON. Errors keep their retry class with the token
// scrubbed from their text.
func runGraphJob[P, C, R any](ctx context.Context, cfg GraphConfig, jobType string, job *models.Job,
	parse func([]byte) (*P, error), token func(*P) string,
	run func(context.Context, *graphClient, *P, *C) (*R, error)) (json.RawMessage, error) {
	if job == nil {
		return nil, jobs.Permanent(errors.New(jobType + ": nil job"))
	}
	p, err := parse(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	var cp C
	if _, err := jobs.LoadCheckpoint(job, &cp); err != nil {
		return nil, jobs.Permanent(err)
	}
	c := &graphClient{cfg: cfg, token: token(p), key: graphAccountKey(p)}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res, err := run(ctx, c, p, &cp)
	if err != nil {
		return nil, c.scrubKeepClass(err)
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("%s: encode result: %w", jobType, err)
	}
	return out, nil
}
