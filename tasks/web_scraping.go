package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/temoto/robotstxt"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"

	"github.com/jobhook/jobhook/internal/safehttp"
	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeWebScraping is the job type that fetches one web page and extracts
// its title, description, canonical URL, headings, links and an excerpt.
const TypeWebScraping = "web_scraping"

// Defaults and limits of the web_scraping job type.
const (
	// WebScrapingTimeoutDefault bounds one run of a job.
	WebScrapingTimeoutDefault = 15 * time.Second
	// WebScrapingMaxBodyBytesDefault caps the (decompressed) page body.
	WebScrapingMaxBodyBytesDefault int64 = 5 << 20
	// WebScrapingMaxRedirectsDefault is how many redirects a fetch follows.
	WebScrapingMaxRedirectsDefault = 5
	// WebScrapingUserAgentDefault is the User-Agent sent with every request.
	// Its product token ("jobhookbot") is the name matched in robots.txt.
	WebScrapingUserAgentDefault = "jobhookbot/1.0 (+https://github.com/jobhook/jobhook)"
	// WebScrapingRobotsCacheSizeDefault is how many hosts' robots.txt rules
	// are cached.
	WebScrapingRobotsCacheSizeDefault = 256
	// WebScrapingMaxURLLength is the longest URL a payload may carry.
	WebScrapingMaxURLLength = 2048
)

// Internal limits: result sizes, Retry-After cap, robots.txt handling.
const (
	maxHeadings      = 50
	maxLinks         = 200
	maxExcerptRunes  = 500
	maxTitleRunes    = 300
	maxTextRunes     = 300 // heading and link texts
	maxRetryAfter    = time.Hour
	maxRobotsBytes   = 512 << 10 // RFC 9309 §2.5: parse at least 500 KiB
	robotsTTL        = 24 * time.Hour
	jobTimeoutMargin = 5 * time.Second
	maxUnknownFields = 5 // reported in a validation error
	// maxPlainTextBytes is how much of a text/plain page the excerpt is
	// taken from.
	maxPlainTextBytes = 64 << 10
)

// WebScrapingConfig configures NewWebScraping. The zero value is the safe
// production setting: public addresses on ports 80 and 443 only, robots.txt
// obeyed.
type WebScrapingConfig struct {
	// AllowPrivate lets jobs fetch loopback, private and link-local
	// addresses on any port. For tests and local use only: with it, any
	// user who can create a job can reach internal services. Defaults to
	// false.
	AllowPrivate bool
	// AllowPrefixes lists address prefixes allowed even though they are not
	// public, such as 127.0.0.1/32 for a test server; all other addresses
	// are still checked. Defaults to none.
	AllowPrefixes []netip.Prefix
	// AnyPort allows destination ports other than 80 and 443. Defaults to
	// false.
	AnyPort bool
	// Timeout bounds one run of a job: the robots.txt checks, the fetch
	// with its redirects and reading the body. Defaults to
	// WebScrapingTimeoutDefault (15s) when zero or negative.
	Timeout time.Duration
	// MaxBodyBytes caps the page body after decompression; a larger page
	// fails the job. Defaults to WebScrapingMaxBodyBytesDefault (5 MiB) when
	// zero or negative.
	MaxBodyBytes int64
	// MaxRedirects is how many redirects a fetch follows before failing.
	// Defaults to WebScrapingMaxRedirectsDefault (5) when zero; negative
	// means no redirect is followed.
	MaxRedirects int
	// UserAgent is sent with every request; its first token (up to "/") is
	// the agent name looked up in robots.txt. Defaults to
	// WebScrapingUserAgentDefault.
	UserAgent string
	// IgnoreRobots skips robots.txt. Defaults to false: robots.txt is
	// fetched (once per scheme and host, cached for up to 24h) and obeyed,
	// for the requested URL and every redirect target.
	IgnoreRobots bool
	// RobotsCacheSize bounds how many hosts' robots.txt rules are kept; when
	// full, the oldest entry is dropped. Defaults to
	// WebScrapingRobotsCacheSizeDefault (256) when zero or negative.
	RobotsCacheSize int
	// Clock gives the time for fetchedAt, the robots.txt cache and
	// Retry-After dates. Defaults to jobs.SystemClock.
	Clock jobs.Clock

	// TracerProvider, when set, makes each request (pages, robots.txt) a
	// client span of the attempt's trace, sending its traceparent; the
	// SSRF-safe dialer stays underneath.
	TracerProvider trace.TracerProvider

	// resolver replaces the system's DNS resolver (tests).
	resolver *net.Resolver
}

func (c WebScrapingConfig) withDefaults() WebScrapingConfig {
	if c.Timeout <= 0 {
		c.Timeout = WebScrapingTimeoutDefault
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = WebScrapingMaxBodyBytesDefault
	}
	if c.MaxRedirects == 0 {
		c.MaxRedirects = WebScrapingMaxRedirectsDefault
	}
	if c.UserAgent == "" {
		c.UserAgent = WebScrapingUserAgentDefault
	}
	if c.RobotsCacheSize <= 0 {
		c.RobotsCacheSize = WebScrapingRobotsCacheSizeDefault
	}
	if c.Clock == nil {
		c.Clock = jobs.SystemClock{}
	}
	return c
}

// WebScrapingPayload is the payload of a web_scraping job, such as
// {"url": "https://example.com/"}. Unknown fields are rejected, so that a
// misspelt field is reported instead of silently ignored.
type WebScrapingPayload struct {
	// URL is the absolute http or https URL to fetch, at most
	// WebScrapingMaxURLLength characters, without user information.
	URL string `json:"url"`
}

// WebScrapingResult is the result of a web_scraping job.
type WebScrapingResult struct {
	// URL is the URL from the payload.
	URL string `json:"url"`
	// FinalURL is the URL of the page after redirects.
	FinalURL string `json:"finalUrl"`
	// StatusCode is the HTTP status of the page (2xx).
	StatusCode int `json:"statusCode"`
	// ContentType is the page's media type, such as "text/html", without
	// parameters.
	ContentType string `json:"contentType"`
	// Title is the page's <title>, falling back to og:title; empty for
	// text/plain.
	Title string `json:"title"`
	// Description is the meta description, falling back to og:description.
	Description string `json:"description"`
	// CanonicalURL is the absolute URL of <link rel="canonical">, if any.
	CanonicalURL string `json:"canonicalUrl"`
	// Headings are the first h1–h3 headings, in document order.
	Headings []WebScrapingHeading `json:"headings"`
	// Links are the page's http and https links, absolute, without
	// fragment, deduplicated, in document order.
	Links []WebScrapingLink `json:"links"`
	// Excerpt is the start of the page's visible text, whitespace collapsed.
	Excerpt string `json:"excerpt"`
	// FetchedAt is when the page was fetched (UTC).
	FetchedAt time.Time `json:"fetchedAt"`
}

// WebScrapingHeading is one h1, h2 or h3 heading of a page.
type WebScrapingHeading struct {
	// Level is 1, 2 or 3.
	Level int `json:"level"`
	// Text is the heading's text, whitespace collapsed.
	Text string `json:"text"`
}

// WebScrapingLink is one link of a page.
type WebScrapingLink struct {
	// Href is the absolute link target.
	Href string `json:"href"`
	// Text is the link's text (or its aria-label, title or image alt).
	Text string `json:"text"`
}

// WebScraping handles web_scraping jobs. It is safe for concurrent use;
// build one with NewWebScraping and register it for TypeWebScraping.
type WebScraping struct {
	cfg          WebScrapingConfig
	agent        string       // product token matched in robots.txt
	client       *http.Client // pages: re-checks robots.txt on each redirect
	robotsClient *http.Client // robots.txt files
	robots       *robotsCache
}

// Compile-time checks that WebScraping is a complete job type.
var (
	_ jobs.Handler          = (*WebScraping)(nil)
	_ jobs.PayloadValidator = (*WebScraping)(nil)
	_ jobs.TimeoutHandler   = (*WebScraping)(nil)
)

// NewWebScraping returns the handler for web_scraping jobs, with cfg's zero
// values replaced by their defaults.
func NewWebScraping(cfg WebScrapingConfig) *WebScraping {
	cfg = cfg.withDefaults()
	opts := safehttp.Options{
		AllowPrivate:  cfg.AllowPrivate,
		AllowPrefixes: cfg.AllowPrefixes,
		AnyPort:       cfg.AnyPort,
		Timeout:       cfg.Timeout,
		MaxRedirects:  cfg.MaxRedirects,
		Resolver:      cfg.resolver,
	}
	h := &WebScraping{
		cfg:          cfg,
		agent:        robotsAgent(cfg.UserAgent),
		client:       safehttp.NewClient(opts),
		robotsClient: safehttp.NewClient(opts),
		robots:       &robotsCache{max: cfg.RobotsCacheSize, entries: map[string]robotsEntry{}},
	}
	h.client.Transport = tracing.Transport(h.client.Transport, cfg.TracerProvider)
	h.robotsClient.Transport = tracing.Transport(h.robotsClient.Transport, cfg.TracerProvider)
	if !cfg.IgnoreRobots {
		guard := h.client.CheckRedirect
		h.client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if err := guard(req, via); err != nil {
				return err
			}
			return h.checkRobots(req.Context(), req.URL)
		}
	}
	return h
}

// Timeout returns the job timeout: the configured Timeout plus a margin, so
// that the handler's own deadline fires first and reports what timed out.
func (h *WebScraping) Timeout() time.Duration {
	return h.cfg.Timeout + jobTimeoutMargin
}

// ValidatePayload checks a web_scraping payload. It returns a
// *jobs.ValidationError with Code "invalid_payload" naming each bad field.
func (h *WebScraping) ValidatePayload(payload json.RawMessage) error {
	_, _, err := parseWebScrapingPayload(payload)
	return err
}

// Handle fetches the page named by the job's payload and returns a
// WebScrapingResult as JSON.
//
// Errors: an invalid payload or URL, a refused destination address or
// port, a URL disallowed by robots.txt, too many redirects, a 4xx status
// other than 408 and 429, an unsupported content type and a body over
// MaxBodyBytes are permanent. A 408, 429 or 5xx status with a Retry-After
// header asks for a retry after that delay (at most 1h). Other 5xx
// statuses, an unreachable robots.txt, timeouts and connection errors are
// plain errors, retried with backoff.
func (h *WebScraping) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	if job == nil {
		return nil, jobs.Permanent(errors.New("web_scraping: nil job"))
	}
	raw, target, err := parseWebScrapingPayload(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}

	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()

	if !h.cfg.IgnoreRobots {
		if err := h.checkRobots(ctx, target); err != nil {
			return nil, err // already classified
		}
	}
	res, err := h.fetch(ctx, raw, target)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("web_scraping: encode result: %w", err)
	}
	return out, nil
}

// fetch gets the page and extracts the result.
func (h *WebScraping) fetch(ctx context.Context, raw string, target *url.URL) (*WebScrapingResult, error) {
	reqURL := target.String()
	what := "fetch " + reqURL
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reqURL, nil)
	if err != nil {
		return nil, jobs.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	req.Header.Set("User-Agent", h.cfg.UserAgent)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1")

	resp, err := h.client.Do(req)
	if err != nil {
		return nil, classifyFetchError(reqURL, err)
	}
	defer resp.Body.Close()

	if err := statusError(what, resp, h.cfg.Clock.Now()); err != nil {
		return nil, err
	}
	header := resp.Header.Get("Content-Type")
	mediaType := parseMediaType(header)
	if header != "" && !acceptedMediaType(mediaType) {
		return nil, unsupportedType(what, mediaType)
	}
	if resp.ContentLength > h.cfg.MaxBodyBytes {
		return nil, jobs.Permanent(fmt.Errorf("%s: %w", what, tooLarge(h.cfg.MaxBodyBytes)))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, classifyFetchError(reqURL, err)
	}
	if int64(len(body)) > h.cfg.MaxBodyBytes {
		return nil, jobs.Permanent(fmt.Errorf("%s: %w", what, tooLarge(h.cfg.MaxBodyBytes)))
	}
	if header == "" {
		header = http.DetectContentType(body)
		mediaType = parseMediaType(header)
		if !acceptedMediaType(mediaType) {
			return nil, unsupportedType(what, mediaType)
		}
	}

	text, err := charset.NewReader(bytes.NewReader(body), header)
	if err != nil {
		return nil, jobs.Permanent(fmt.Errorf("%s: decode charset: %w", what, err))
	}
	res := &WebScrapingResult{
		URL:         raw,
		FinalURL:    resp.Request.URL.String(),
		StatusCode:  resp.StatusCode,
		ContentType: mediaType,
		Headings:    []WebScrapingHeading{},
		Links:       []WebScrapingLink{},
		FetchedAt:   h.cfg.Clock.Now().UTC(),
	}
	if mediaType == "text/plain" {
		b, err := io.ReadAll(io.LimitReader(text, maxPlainTextBytes))
		if err != nil {
			return nil, jobs.Permanent(fmt.Errorf("%s: decode charset: %w", what, err))
		}
		res.Excerpt = clip(string(b), maxExcerptRunes)
		return res, nil
	}
	if err := extractHTML(res, text, resp.Request.URL); err != nil {
		return nil, jobs.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	return res, nil
}

// Errors of the web_scraping job type. The job's error message shows them.
var (
	errAddressNotAllowed  = errors.New("destination address is not allowed (private, loopback, link-local or reserved)")
	errPortNotAllowed     = errors.New("destination port is not allowed (only 80 and 443)")
	errRobotsDisallowed   = errors.New("disallowed by robots.txt")
	errRobotsUnreachable  = errors.New("robots.txt unreachable; the page is not fetched until it can be read")
	errUnsupportedType    = errors.New("unsupported content type")
	errBodyTooLarge       = errors.New("response body too large")
	errUnexpectedResponse = errors.New("unexpected response status")
)

// refusedError replaces the message of a safehttp refusal, which names the
// resolved IP address, while keeping errors.Is(err, safehttp.ErrBlockedAddress).
type refusedError struct {
	reason error // errAddressNotAllowed or errPortNotAllowed
	cause  error // the refusal from safehttp
}

func (e *refusedError) Error() string   { return e.reason.Error() }
func (e *refusedError) Unwrap() []error { return []error{e.reason, e.cause} }

// classifyFetchError turns an error from requesting or reading reqURL into
// a permanent or retryable job error.
func classifyFetchError(reqURL string, err error) error {
	what, failed := "fetch "+reqURL, reqURL
	if uerr, ok := err.(*url.Error); ok {
		// Keep the URL only when it is a redirect target, and the cause.
		if uerr.URL != reqURL {
			what += " (redirected to " + uerr.URL + ")"
		}
		err, failed = uerr.Err, uerr.URL
	}
	// Errors from checkRobots (run for each redirect) are already
	// classified.
	if errors.Is(err, errRobotsDisallowed) || errors.Is(err, errRobotsUnreachable) {
		return err
	}
	switch {
	case errors.Is(err, safehttp.ErrBlockedPort):
		return jobs.Permanent(fmt.Errorf("%s: %w", what, &refusedError{reason: errPortNotAllowed, cause: err}))
	case errors.Is(err, safehttp.ErrBlockedAddress):
		return jobs.Permanent(fmt.Errorf("%s: %w", what, &refusedError{reason: errAddressNotAllowed, cause: err}))
	case errors.Is(err, safehttp.ErrTooManyRedirects), errors.Is(err, safehttp.ErrUnsupportedScheme):
		return jobs.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	if ne := describeNetError(failed, err); ne != nil {
		err = ne
	}
	return fmt.Errorf("%s: %w", what, err)
}

// netError replaces the text of a network error, which names the server's
// DNS resolver ("lookup x on 10.0.0.2:53: no such host") or its own
// address ("read tcp 10.0.0.5:41000->…"), with what went wrong in the
// terms of the URL the user gave, keeping the cause for errors.Is and
// errors.As.
type netError struct {
	msg   string
	cause error
}

func (e *netError) Error() string { return e.msg }
func (e *netError) Unwrap() error { return e.cause }

// describeNetError returns err as a *netError when it is a DNS or socket
// error met fetching rawURL, else nil. It names the URL's host and port,
// never an address: not the server's own, nor the one the host resolved
// to (see safehttp.BlockedError).
func describeNetError(rawURL string, err error) error {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		why := "the DNS lookup failed"
		switch {
		case dnsErr.IsNotFound:
			why = "no such host"
		case dnsErr.IsTimeout:
			why = "the DNS lookup timed out"
		}
		return &netError{msg: fmt.Sprintf("could not resolve host %s (%s)", dnsErr.Name, why), cause: err}
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		return nil
	}
	why := "network error"
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		why = "connection reset"
	case errors.Is(err, syscall.EPIPE):
		why = "connection closed"
	case errors.Is(err, syscall.ENETUNREACH):
		why = "network unreachable"
	case errors.Is(err, syscall.EHOSTUNREACH):
		why = "host unreachable"
	case opErr.Timeout():
		why = "timed out"
	}
	host := "the host"
	if u, perr := url.Parse(rawURL); perr == nil && u.Host != "" {
		host = u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[string]string{"http": "80", "https": "443"}[u.Scheme])
		}
	}
	switch opErr.Op {
	case "dial":
		return &netError{msg: fmt.Sprintf("could not connect to %s (%s)", host, why), cause: err}
	case "read":
		return &netError{msg: fmt.Sprintf("the connection to %s failed while reading (%s)", host, why), cause: err}
	case "write":
		return &netError{msg: fmt.Sprintf("the connection to %s failed while writing (%s)", host, why), cause: err}
	}
	return &netError{msg: fmt.Sprintf("the connection to %s failed (%s)", host, why), cause: err}
}

// statusError classifies a non-2xx status; it returns nil for 2xx.
func statusError(what string, resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("%s: %w: %s", what, errUnexpectedResponse, resp.Status)
	if code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			return jobs.RetryAfter(err, d)
		}
		return err
	}
	return jobs.Permanent(err)
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP
// date, as a delay from now between 0 and maxRetryAfter.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange):
			return maxRetryAfter, true
		case err != nil:
			return 0, false
		case secs > uint64(maxRetryAfter/time.Second):
			return maxRetryAfter, true
		}
		d = time.Duration(secs) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0, false
		}
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter), true
}

func parseMediaType(header string) string {
	mt, _, err := mime.ParseMediaType(header)
	if err != nil {
		// Keep what precedes any parameters, so the error can name it.
		mt, _, _ = strings.Cut(header, ";")
		return strings.ToLower(strings.TrimSpace(mt))
	}
	return mt
}

func acceptedMediaType(mt string) bool {
	return mt == "text/html" || mt == "application/xhtml+xml" || mt == "text/plain"
}

func unsupportedType(what, mediaType string) error {
	if mediaType == "" {
		mediaType = "none"
	}
	return jobs.Permanent(fmt.Errorf("%s: %w %q (want text/html, application/xhtml+xml or text/plain)",
		what, errUnsupportedType, mediaType))
}

func tooLarge(limit int64) error {
	return fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, limit)
}

// parseWebScrapingPayload decodes and checks a payload. It returns the URL
// as given and parsed, or a *jobs.ValidationError.
func parseWebScrapingPayload(payload []byte) (string, *url.URL, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return "", nil, &jobs.ValidationError{
			Code:    "invalid_payload",
			Message: `web_scraping payload must be a JSON object such as {"url": "https://example.com/"}`,
		}
	}
	var problems []jobs.FieldError
	var unknown []string
	for name := range fields {
		if name != "url" {
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

	var raw string
	var target *url.URL
	value, ok := fields["url"]
	switch {
	case !ok || string(bytes.TrimSpace(value)) == "null":
		problems = append(problems, jobs.FieldError{Field: "url", Message: "is required"})
	case json.Unmarshal(value, &raw) != nil:
		problems = append(problems, jobs.FieldError{Field: "url", Message: "must be a string"})
	default:
		var msg string
		if target, msg = parseTargetURL(raw); msg != "" {
			problems = append(problems, jobs.FieldError{Field: "url", Message: msg})
		}
	}
	if len(problems) > 0 {
		return "", nil, &jobs.ValidationError{
			Code:    "invalid_payload",
			Message: "invalid web_scraping payload",
			Fields:  problems,
		}
	}
	return raw, target, nil
}

// parseTargetURL checks a URL to fetch; it returns the problem, if any, as
// a message for the url field.
func parseTargetURL(s string) (*url.URL, string) {
	if strings.TrimSpace(s) == "" {
		return nil, "is required"
	}
	if len(s) > WebScrapingMaxURLLength {
		return nil, fmt.Sprintf("must be at most %d characters", WebScrapingMaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, "is not a valid URL"
	}
	switch {
	case u.Scheme == "":
		return nil, "must be an absolute URL such as https://example.com/"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "scheme must be http or https"
	case u.Opaque != "" || u.Host == "":
		return nil, "must be an absolute URL with a host, such as https://example.com/"
	case u.User != nil:
		return nil, "must not contain user information (user:password@)"
	case u.Hostname() == "":
		return nil, "must include a host name"
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, "port must be between 1 and 65535"
		}
	}
	u.Fragment, u.RawFragment = "", ""
	return u, ""
}

// robotsAgent returns the product token of a User-Agent, such as
// "jobhookbot" for "jobhookbot/1.0 (+https://…)".
func robotsAgent(userAgent string) string {
	token, _, _ := strings.Cut(strings.TrimSpace(userAgent), "/")
	token, _, _ = strings.Cut(token, " ")
	if token == "" {
		return "*"
	}
	return strings.ToLower(token)
}

// checkRobots returns nil when robots.txt lets this handler fetch u, a
// permanent error wrapping errRobotsDisallowed when it does not, or an
// error wrapping errRobotsUnreachable when it cannot be read for now.
func (h *WebScraping) checkRobots(ctx context.Context, u *url.URL) error {
	origin := u.Scheme + "://" + strings.ToLower(u.Host)
	now := h.cfg.Clock.Now()
	group, ok := h.robots.get(origin, now)
	if !ok {
		var err error
		if group, err = h.fetchRobots(ctx, origin); err != nil {
			return err
		}
		h.robots.put(origin, group, now)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	if !group.Test(path) {
		return jobs.Permanent(fmt.Errorf("fetch %s: %w", u.Redacted(), errRobotsDisallowed))
	}
	return nil
}

// fetchRobots reads origin's robots.txt and returns the rules for this
// handler's agent, following RFC 9309 §2.3.1: a 2xx file is obeyed, a 4xx
// (missing) file allows everything, and a 5xx, 429 or network failure means
// "disallow everything for now", reported as a retryable error and not
// cached. A file that cannot be parsed disallows everything.
func (h *WebScraping) fetchRobots(ctx context.Context, origin string) (*robotstxt.Group, error) {
	robotsURL := origin + "/robots.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, robotsURL, nil)
	if err != nil {
		return nil, jobs.Permanent(fmt.Errorf("fetch %s: %w", robotsURL, err))
	}
	req.Header.Set("User-Agent", h.cfg.UserAgent)
	resp, err := h.robotsClient.Do(req)
	if errors.Is(err, safehttp.ErrTooManyRedirects) {
		// RFC 9309 §2.3.1.2: after five redirects the file may be taken as
		// unavailable, which allows everything.
		return allowAllGroup(), nil
	}
	if err != nil {
		err = classifyFetchError(robotsURL, err)
		if jobs.IsPermanent(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", err, errRobotsUnreachable)
	}
	defer resp.Body.Close()

	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxRobotsBytes))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", classifyFetchError(robotsURL, err), errRobotsUnreachable)
		}
		data, err := robotstxt.FromBytes(body)
		if err != nil {
			return disallowAllGroup(), nil
		}
		return data.FindGroup(h.agent), nil
	case code >= 400 && code < 500 && code != http.StatusTooManyRequests:
		return allowAllGroup(), nil
	}
	err = fmt.Errorf("fetch %s: %w: %s: %w", robotsURL, errUnexpectedResponse, resp.Status, errRobotsUnreachable)
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), h.cfg.Clock.Now()); ok {
		return nil, jobs.RetryAfter(err, d)
	}
	return nil, err
}

func allowAllGroup() *robotstxt.Group {
	data, _ := robotstxt.FromStatusAndBytes(http.StatusNotFound, nil)
	return data.FindGroup("*")
}

func disallowAllGroup() *robotstxt.Group {
	data, _ := robotstxt.FromStatusAndBytes(http.StatusInternalServerError, nil)
	return data.FindGroup("*")
}

// robotsCache keeps robots.txt rules per scheme://host for up to robotsTTL
// and at most max entries, dropping the oldest when full. Two jobs for the
// same new host may both fetch its robots.txt; the later one wins.
type robotsCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]robotsEntry
}

type robotsEntry struct {
	group   *robotstxt.Group
	fetched time.Time
}

func (c *robotsCache) get(origin string, now time.Time) (*robotstxt.Group, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[origin]
	if !ok || now.Sub(e.fetched) >= robotsTTL || now.Before(e.fetched) {
		return nil, false
	}
	return e.group, true
}

func (c *robotsCache) put(origin string, g *robotstxt.Group, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[origin]; !ok && len(c.entries) >= c.max {
		var oldest string
		var oldestAt time.Time
		for k, e := range c.entries {
			if oldest == "" || e.fetched.Before(oldestAt) {
				oldest, oldestAt = k, e.fetched
			}
		}
		delete(c.entries, oldest)
	}
	c.entries[origin] = robotsEntry{group: g, fetched: now}
}

// extractHTML parses an HTML page (already UTF-8) found at pageURL and fills
// res's title, description, canonical URL, headings, links and excerpt.
func extractHTML(res *WebScrapingResult, r io.Reader, pageURL *url.URL) error {
	doc, err := goquery.NewDocumentFromReader(r)
	if err != nil {
		return fmt.Errorf("parse HTML: %w", err)
	}

	base := pageURL
	if href, ok := doc.Find("base[href]").First().Attr("href"); ok {
		if b, err := pageURL.Parse(strings.TrimSpace(href)); err == nil && (b.Scheme == "http" || b.Scheme == "https") {
			base = b
		}
	}

	var ogTitle, ogDescription string
	doc.Find("meta[content]").Each(func(_ int, s *goquery.Selection) {
		content := clip(s.AttrOr("content", ""), maxTitleRunes)
		name := strings.ToLower(strings.TrimSpace(s.AttrOr("name", "")))
		property := strings.ToLower(strings.TrimSpace(s.AttrOr("property", "")))
		switch {
		case content == "":
		case name == "description" && res.Description == "":
			res.Description = content
		case (property == "og:description" || name == "og:description") && ogDescription == "":
			ogDescription = content
		case (property == "og:title" || name == "og:title") && ogTitle == "":
			ogTitle = content
		}
	})
	res.Title = clip(doc.Find("title").First().Text(), maxTitleRunes)
	if res.Title == "" {
		res.Title = ogTitle
	}
	if res.Description == "" {
		res.Description = ogDescription
	}

	doc.Find("link[href]").EachWithBreak(func(_ int, s *goquery.Selection) bool {
		if !slices.ContainsFunc(strings.Fields(s.AttrOr("rel", "")), func(rel string) bool {
			return strings.EqualFold(rel, "canonical")
		}) {
			return true
		}
		res.CanonicalURL = absoluteURL(base, s.AttrOr("href", ""))
		return res.CanonicalURL == ""
	})

	doc.Find("h1, h2, h3").EachWithBreak(func(_ int, s *goquery.Selection) bool {
		text := clip(s.Text(), maxTextRunes)
		if text == "" {
			return true
		}
		level := int(goquery.NodeName(s)[1] - '0')
		res.Headings = append(res.Headings, WebScrapingHeading{Level: level, Text: text})
		return len(res.Headings) < maxHeadings
	})

	seen := map[string]int{} // href → index in res.Links
	doc.Find("a[href], area[href]").EachWithBreak(func(_ int, s *goquery.Selection) bool {
		href := absoluteURL(base, s.AttrOr("href", ""))
		if href == "" {
			return true
		}
		text := linkText(s)
		if i, dup := seen[href]; dup {
			if res.Links[i].Text == "" {
				res.Links[i].Text = text
			}
			return true
		}
		seen[href] = len(res.Links)
		res.Links = append(res.Links, WebScrapingLink{Href: href, Text: text})
		return len(res.Links) < maxLinks
	})

	root := doc.Find("body").First()
	if root.Length() == 0 {
		root = doc.Selection
	}
	res.Excerpt = visibleText(root.Get(0), maxExcerptRunes)
	return nil
}

// absoluteURL resolves href against base; it returns "" unless the result
// is an http or https URL. The fragment is dropped.
func absoluteURL(base *url.URL, href string) string {
	href = strings.TrimSpace(href)
	if href == "" {
		return ""
	}
	u, err := base.Parse(href)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return ""
	}
	u.Fragment, u.RawFragment = "", ""
	abs := u.String()
	if _, err := url.Parse(abs); err != nil { // such as "https://::0"
		return ""
	}
	return abs
}

func linkText(s *goquery.Selection) string {
	if text := clip(s.Text(), maxTextRunes); text != "" {
		return text
	}
	for _, attr := range []string{"aria-label", "title", "alt"} {
		if text := clip(s.AttrOr(attr, ""), maxTextRunes); text != "" {
			return text
		}
	}
	return clip(s.Find("img[alt]").First().AttrOr("alt", ""), maxTextRunes)
}

// skippedElements hold no visible text.
var skippedElements = map[atom.Atom]bool{
	atom.Head: true, atom.Script: true, atom.Style: true, atom.Noscript: true,
	atom.Template: true, atom.Svg: true, atom.Math: true, atom.Iframe: true,
	atom.Object: true, atom.Canvas: true, atom.Select: true,
}

// blockElements separate words: "<p>a</p><p>b</p>" reads "a b".
var blockElements = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true,
	atom.Br: true, atom.Dd: true, atom.Details: true, atom.Dialog: true, atom.Div: true,
	atom.Dl: true, atom.Dt: true, atom.Fieldset: true, atom.Figcaption: true,
	atom.Figure: true, atom.Footer: true, atom.Form: true, atom.H1: true, atom.H2: true,
	atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true, atom.Header: true,
	atom.Hr: true, atom.Li: true, atom.Main: true, atom.Nav: true, atom.Ol: true,
	atom.P: true, atom.Pre: true, atom.Section: true, atom.Summary: true,
	atom.Table: true, atom.Td: true, atom.Th: true, atom.Tr: true, atom.Ul: true,
	atom.Option: true, atom.Button: true, atom.Img: true, atom.Input: true,
}

// visibleText returns the first maxRunes runes of the text under root,
// skipping scripts, styles and hidden elements, with whitespace collapsed.
// It walks the tree without recursion, so deep documents are safe.
func visibleText(root *html.Node, maxRunes int) string {
	if root == nil {
		return ""
	}
	var b strings.Builder
	enough := maxRunes*4 + 64 // bytes: plenty for maxRunes runes after collapsing
	n := root
	for b.Len() < enough {
		descend := true
		switch n.Type {
		case html.TextNode:
			b.WriteString(n.Data)
		case html.ElementNode:
			switch {
			case skippedElements[n.DataAtom] || hasAttr(n, "hidden"):
				descend = false
			case blockElements[n.DataAtom]:
				b.WriteByte(' ')
			}
		case html.CommentNode, html.DoctypeNode, html.RawNode:
			descend = false
		}
		if descend && n.FirstChild != nil {
			n = n.FirstChild
			continue
		}
		// Leave n, and every ancestor it finishes, up to root.
		for {
			if n.Type == html.ElementNode && blockElements[n.DataAtom] {
				b.WriteByte(' ')
			}
			if n == root {
				return clip(b.String(), maxRunes)
			}
			if n.NextSibling != nil {
				n = n.NextSibling
				break
			}
			n = n.Parent
		}
	}
	return clip(b.String(), maxRunes)
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return true
		}
	}
	return false
}

// clip collapses whitespace and cuts s to at most maxRunes runes, at a word
// boundary when one is near, marking a cut with "…".
func clip(s string, maxRunes int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxRunes { // bytes ≥ runes: short enough
		return s
	}
	runes := []rune(s)
	if len(runes) <= maxRunes {
		return s
	}
	cut := runes[:maxRunes-1] // leave room for "…"
	for i := len(cut) - 1; i > len(cut)-maxRunes/5 && i > 0; i-- {
		if cut[i] == ' ' {
			cut = cut[:i]
			break
		}
	}
	return string(cut) + "…"
}
