// Package qstashclient is jobhook's side of QStash, through the official
// github.com/upstash/qstash-go client: it publishes the calls to the worker
// endpoint (a jobs.Publisher) and manages jobhook's schedules.
package qstashclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/upstash/qstash-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
)

// DefaultBaseURL is QStash's API.
const DefaultBaseURL = "https://qstash.upstash.io"

// DefaultTimeout bounds one QStash API call (qstash-go takes no context).
const DefaultTimeout = 10 * time.Second

// Config builds a Client.
type Config struct {
	// BaseURL is the QStash API (QSTASH_URL). Defaults to DefaultBaseURL.
	BaseURL string
	// Token is QSTASH_TOKEN. Required.
	Token string
	// WorkerURL is the worker endpoint QStash calls, as QStash must see it
	// (PUBLIC_URL + "/api/workers"). Required.
	WorkerURL string
	// DeliveryRetries is how often QStash retries a scheduled job's
	// delivery. Defaults to 3.
	DeliveryRetries int
	// HTTPClient defaults to a client with DefaultTimeout.
	HTTPClient *http.Client
	// TracerProvider, when set, makes each publish (PublishAt, Trigger,
	// TriggerAt) a client span in its context's trace, and forwards that
	// span's traceparent and tracestate to the worker endpoint
	// (Upstash-Forward-Traceparent, Upstash-Forward-Tracestate: QStash
	// delivers them as traceparent and tracestate), so the drain the
	// message starts is in the same trace. Nil: no spans, no headers.
	TracerProvider trace.TracerProvider
}

// Client publishes to QStash and manages schedules.
type Client struct {
	qs        *qstash.Client
	http      *http.Client
	base      *url.URL
	token     string
	workerURL string
	retries   int
	// traced, set when Config.TracerProvider is, is the client of the
	// publishes (see publisher); schedules never forward a trace.
	traced *http.Client
}

var _ jobs.Publisher = (*Client)(nil)

// New returns a Client. Every request goes to cfg.BaseURL, whatever the
// QSTASH_URL environment variable says (qstash-go reads it by itself).
func New(cfg Config) (*Client, error) {
	if cfg.Token == "" {
		return nil, errors.New("qstash: a token is required (QSTASH_TOKEN)")
	}
	if cfg.WorkerURL == "" {
		return nil, errors.New("qstash: the worker URL is required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("qstash: QSTASH_URL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.DeliveryRetries <= 0 {
		cfg.DeliveryRetries = 3
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	inner := hc.Transport
	if inner == nil {
		inner = http.DefaultTransport
	}
	pinned := *hc
	pinned.Transport = pinBase{base: base, next: inner}
	qs := qstash.NewClientWith(qstash.Options{Url: base.String(), Token: cfg.Token, Client: &pinned})
	c := &Client{qs: qs, http: &pinned, base: base, token: cfg.Token, workerURL: cfg.WorkerURL, retries: cfg.DeliveryRetries}
	if cfg.TracerProvider != nil {
		// withSpan gives the request its caller's span, the traced
		// transport makes the client span and sends its traceparent,
		// forwardTrace copies that into the Upstash-Forward- headers.
		c.traced = &http.Client{
			Transport:     tracing.Transport(forwardTrace{next: pinned.Transport}, cfg.TracerProvider),
			CheckRedirect: pinned.CheckRedirect, Jar: pinned.Jar, Timeout: pinned.Timeout,
		}
	}
	return c, nil
}

// publisher is the qstash-go client for one publish made with ctx: when
// tracing, one whose requests carry ctx's span (qstash-go takes no
// context), so that the publish is a client span of ctx's trace.
func (c *Client) publisher(ctx context.Context) *qstash.Client {
	if c.traced == nil {
		return c.qs
	}
	hc := *c.traced
	hc.Transport = withSpan{sc: trace.SpanContextFromContext(ctx), next: c.traced.Transport}
	return qstash.NewClientWith(qstash.Options{Url: c.base.String(), Token: c.token, Client: &hc})
}

// withSpan sends each request with a span context as its parent (the
// request keeps its own context, with the client's deadline).
type withSpan struct {
	sc   trace.SpanContext
	next http.RoundTripper
}

func (w withSpan) RoundTrip(r *http.Request) (*http.Response, error) {
	if !w.sc.IsValid() {
		return w.next.RoundTrip(r)
	}
	return w.next.RoundTrip(r.WithContext(trace.ContextWithSpanContext(r.Context(), w.sc)))
}

// forwardTrace copies the trace headers the traced transport set on a
// publish into the headers QStash forwards to the worker endpoint.
type forwardTrace struct {
	next http.RoundTripper
}

func (f forwardTrace) RoundTrip(r *http.Request) (*http.Response, error) {
	tp := r.Header.Get("Traceparent")
	if tp == "" {
		return f.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Upstash-Forward-Traceparent", tp)
	if ts := r.Header.Get("Tracestate"); ts != "" {
		r.Header.Set("Upstash-Forward-Tracestate", ts)
	}
	return f.next.RoundTrip(r)
}

func (c *Client) pinnedHTTP() *http.Client { return c.http }

// pinBase sends every request to the configured base URL: qstash-go lets
// the QSTASH_URL environment variable override the one it is given.
type pinBase struct {
	base *url.URL
	next http.RoundTripper
}

func (p pinBase) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host == p.base.Host && r.URL.Scheme == p.base.Scheme {
		return p.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = p.base.Scheme, p.base.Host
	r.Host = p.base.Host
	return p.next.RoundTrip(r)
}

// Raw returns the underlying qstash-go client.
func (c *Client) Raw() *qstash.Client { return c.qs }

// PublishAt publishes {"jobId":N} to the worker endpoint, not before at
// (Upstash-Not-Before, unix seconds), deduplicated on job and time.
func (c *Client) PublishAt(ctx context.Context, jobID int64, at time.Time) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	res, err := c.publisher(ctx).PublishJSON(qstash.PublishJSONOptions{
		Url:             c.workerURL,
		Body:            map[string]any{"jobId": jobID},
		NotBefore:       strconv.FormatInt(at.Unix(), 10),
		Retries:         qstash.RetryCount(c.retries),
		DeduplicationId: fmt.Sprintf("job-%d-at-%d", jobID, at.Unix()),
	})
	if err != nil {
		return "", fmt.Errorf("qstash: publish delivery of job %d: %w", jobID, err)
	}
	if res.MessageId == "" {
		return "", fmt.Errorf("qstash: publish delivery of job %d: no message id in the answer", jobID)
	}
	return res.MessageId, nil
}

// Cancel cancels a published message.
func (c *Client) Cancel(ctx context.Context, messageID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.qs.Messages().Cancel(messageID); err != nil {
		return fmt.Errorf("qstash: cancel message %s: %w", messageID, err)
	}
	return nil
}

// Trigger publishes {"trigger":"create"} to the worker endpoint, after
// delay (whole seconds). A trigger is retried once: the per-minute drain is
// the fallback.
func (c *Client) Trigger(ctx context.Context, delay time.Duration) error {
	opts := c.triggerOptions("create")
	if delay > 0 {
		opts.Delay = fmt.Sprintf("%ds", int64((delay+time.Second-1)/time.Second))
	}
	return c.publishTrigger(ctx, opts)
}

// TriggerAt publishes {"trigger":"wake"} to the worker endpoint, not
// before at's second (Upstash-Not-Before, unix seconds, at truncated). It
// is retried once, like Trigger.
func (c *Client) TriggerAt(ctx context.Context, at time.Time) error {
	opts := c.triggerOptions("wake")
	opts.NotBefore = strconv.FormatInt(at.Unix(), 10)
	return c.publishTrigger(ctx, opts)
}

// triggerOptions is a trigger message to the worker endpoint.
func (c *Client) triggerOptions(why string) qstash.PublishJSONOptions {
	return qstash.PublishJSONOptions{
		Url:     c.workerURL,
		Body:    map[string]any{"trigger": why},
		Retries: qstash.RetryCount(1),
	}
}

func (c *Client) publishTrigger(ctx context.Context, opts qstash.PublishJSONOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := c.publisher(ctx).PublishJSON(opts); err != nil {
		return fmt.Errorf("qstash: publish trigger: %w", err)
	}
	return nil
}

// ScheduleSpec is a schedule jobhook wants QStash to run.
type ScheduleSpec struct {
	// ID is the schedule's id (QStash's Upstash-Schedule-Id): creating a
	// schedule with an existing id replaces it.
	ID          string
	Cron        string
	Destination string
	Method      string
	// Body is sent as application/json.
	Body    string
	Retries int
}

// ListSchedules returns every schedule of the QStash account.
func (c *Client) ListSchedules(ctx context.Context) ([]qstash.Schedule, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	list, err := c.qs.Schedules().List()
	if err != nil {
		return nil, fmt.Errorf("qstash: list schedules: %w", err)
	}
	return list, nil
}

// UpsertSchedule creates the schedule, or replaces the one with its id.
// qstash-go v1.0.0 cannot send Upstash-Schedule-Id (it forwards every
// header it is given), so a one-off transport adds it.
func (c *Client) UpsertSchedule(ctx context.Context, s ScheduleSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	withID := *c.pinnedHTTP()
	withID.Transport = addHeader{name: "Upstash-Schedule-Id", value: s.ID, next: withID.Transport}
	qs := qstash.NewClientWith(qstash.Options{Url: c.base.String(), Token: c.token, Client: &withID})
	_, err := qs.Schedules().Create(qstash.ScheduleOptions{
		Cron:        s.Cron,
		Destination: s.Destination,
		Method:      s.Method,
		ContentType: "application/json",
		Body:        s.Body,
		Retries:     qstash.RetryCount(s.Retries),
	})
	if err != nil {
		return fmt.Errorf("qstash: create schedule %s: %w", s.ID, err)
	}
	return nil
}

// DeleteSchedule deletes a schedule.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.qs.Schedules().Delete(id); err != nil {
		return fmt.Errorf("qstash: delete schedule %s: %w", id, err)
	}
	return nil
}

type addHeader struct {
	name, value string
	next        http.RoundTripper
}

func (a addHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(a.name, a.value)
	return a.next.RoundTrip(r)
}
