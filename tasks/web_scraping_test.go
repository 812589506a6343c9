package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fakedns "github.com/jobhook/jobhook/internal/fakes/dns"
	"github.com/jobhook/jobhook/internal/safehttp"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// scrapeBundle is a test server with a mux, its hit counters and a handler.
type scrapeBundle struct {
	srv    *httptest.Server
	mux    *http.ServeMux
	hits   atomic.Int64 // requests other than /robots.txt
	robots atomic.Int64 // requests for /robots.txt
	clock  *jobs.ManualClock
}

// setup starts a test server whose /robots.txt answers 404 unless a test
// registers its own, and returns it with a loopback-friendly config.
func setup(t *testing.T) (*scrapeBundle, WebScrapingConfig) {
	t.Helper()
	b := &scrapeBundle{mux: http.NewServeMux(), clock: jobs.NewManualClock(testNow)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/robots.txt" {
			b.robots.Add(1)
		} else {
			b.hits.Add(1)
		}
		b.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b, WebScrapingConfig{AllowPrivate: true, Timeout: 5 * time.Second, Clock: b.clock}
}

func (b *scrapeBundle) url(path string) string { return b.srv.URL + path }

// page registers a handler answering path with a fixed content type and body.
func (b *scrapeBundle) page(path, contentType, body string) {
	b.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	})
}

func job(t *testing.T, rawURL string) *models.Job {
	t.Helper()
	payload, err := json.Marshal(WebScrapingPayload{URL: rawURL})
	require.NoError(t, err)
	return &models.Job{ID: 1, Type: TypeWebScraping, Payload: models.JSON(payload)}
}

func scrape(t *testing.T, h *WebScraping, rawURL string) (*WebScrapingResult, error) {
	t.Helper()
	out, err := h.Handle(context.Background(), job(t, rawURL))
	if err != nil {
		require.Nil(t, out)
		return nil, err
	}
	var res WebScrapingResult
	require.NoError(t, json.Unmarshal(out, &res))
	return &res, nil
}

func requirePermanent(t *testing.T, err error, target error) {
	t.Helper()
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err), "want a permanent error, got %v", err)
	if target != nil {
		assert.ErrorIs(t, err, target)
	}
}

func requireRetryable(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err), "want a retryable error, got %v", err)
}

const testPage = `<!DOCTYPE html>
<html><head>
  <title>  The   Test
    Page </title>
  <meta name="description" content="A page for tests.">
  <meta property="og:description" content="OG description">
  <link rel="stylesheet" href="/style.css">
  <link rel="Canonical alternate" href="/canonical?x=1#top">
  <style>body { color: SECRET_STYLE; }</style>
  <script>var secret = "SECRET_SCRIPT";</script>
</head>
<body>
  <h1>Main   title</h1>
  <p>First paragraph with <b>bold</b>
     text.</p><p>Second paragraph.</p>
  <script>document.write("SECRET_BODY_SCRIPT")</script>
  <noscript>SECRET_NOSCRIPT</noscript>
  <div hidden>SECRET_HIDDEN</div>
  <h2>Sub title</h2>
  <h3>Third level</h3>
  <h4>Too deep</h4>
  <h2>   </h2>
  <a href="/a">A link</a>
  <a href="/a#section">A again</a>
  <a href="b/c?q=1">Relative</a>
  <a href="https://other.example/x"><img src="x.png" alt="Image link"></a>
  <a href="mailto:someone@example.com">Mail</a>
  <a href="javascript:alert(1)">JS</a>
  <a href="#top">Top</a>
  <a href="">Empty</a>
</body></html>`

func TestWebScrapingHTMLPage(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.page("/dir/page", "text/html; charset=utf-8", testPage)
	h := NewWebScraping(cfg)

	res, err := scrape(t, h, b.url("/dir/page"))
	require.NoError(t, err)

	assert.Equal(t, b.url("/dir/page"), res.URL)
	assert.Equal(t, b.url("/dir/page"), res.FinalURL)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/html", res.ContentType)
	assert.Equal(t, "The Test Page", res.Title)
	assert.Equal(t, "A page for tests.", res.Description)
	assert.Equal(t, b.url("/canonical?x=1"), res.CanonicalURL)
	assert.Equal(t, []WebScrapingHeading{
		{Level: 1, Text: "Main title"},
		{Level: 2, Text: "Sub title"},
		{Level: 3, Text: "Third level"},
	}, res.Headings)
	assert.Equal(t, []WebScrapingLink{
		{Href: b.url("/a"), Text: "A link"},
		{Href: b.url("/dir/b/c?q=1"), Text: "Relative"},
		{Href: "https://other.example/x", Text: "Image link"},
		{Href: b.url("/dir/page"), Text: "Top"},
	}, res.Links)
	assert.Equal(t, "Main title First paragraph with bold text. Second paragraph. Sub title Third level Too deep A link A again Relative Mail JS Top Empty", res.Excerpt)
	assert.NotContains(t, res.Excerpt, "SECRET")
	assert.Equal(t, testNow, res.FetchedAt)
}

func TestWebScrapingOGFallbackAndBase(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.page("/", "application/xhtml+xml", `<html><head>
		<base href="https://cdn.example/root/">
		<meta property="og:title" content="OG title">
		<meta property="og:description" content="Only OG">
		<link rel="canonical" href="page">
		</head><body><a href="x">X</a></body></html>`)
	res, err := scrape(t, NewWebScraping(cfg), b.url("/"))
	require.NoError(t, err)
	assert.Equal(t, "application/xhtml+xml", res.ContentType)
	assert.Equal(t, "OG title", res.Title)
	assert.Equal(t, "Only OG", res.Description)
	assert.Equal(t, "https://cdn.example/root/page", res.CanonicalURL)
	assert.Equal(t, []WebScrapingLink{{Href: "https://cdn.example/root/x", Text: "X"}}, res.Links)
}

func TestWebScrapingCharset(t *testing.T) {
	t.Parallel()
	latin1 := "<html><head>%s<title>Caf\xe9 cr\xe8me</title></head><body><p>D\xe9j\xe0 vu</p></body></html>"
	for name, tc := range map[string]struct{ contentType, meta string }{
		"header": {contentType: "text/html; charset=ISO-8859-1"},
		"meta":   {contentType: "text/html", meta: `<meta charset="iso-8859-1">`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, cfg := setup(t)
			b.page("/", tc.contentType, fmt.Sprintf(latin1, tc.meta))
			res, err := scrape(t, NewWebScraping(cfg), b.url("/"))
			require.NoError(t, err)
			assert.Equal(t, "Café crème", res.Title)
			assert.Equal(t, "Déjà vu", res.Excerpt)
		})
	}
}

func TestWebScrapingPlainText(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	long := strings.Repeat("word ", 200)
	b.page("/notes.txt", "text/plain; charset=utf-8", "Just\n\n  some   <b>text</b>.\n"+long)
	res, err := scrape(t, NewWebScraping(cfg), b.url("/notes.txt"))
	require.NoError(t, err)
	assert.Equal(t, "text/plain", res.ContentType)
	assert.Empty(t, res.Title)
	assert.Empty(t, res.Headings)
	assert.NotNil(t, res.Links)
	assert.True(t, strings.HasPrefix(res.Excerpt, "Just some <b>text</b>. word word"), res.Excerpt)
	assert.True(t, strings.HasSuffix(res.Excerpt, "word…"), res.Excerpt)
	assert.LessOrEqual(t, utf8.RuneCountInString(res.Excerpt), maxExcerptRunes)
}

func TestWebScrapingNoContentTypeIsSniffed(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // keep net/http from setting one
		_, _ = w.Write([]byte("<!DOCTYPE html><title>Sniffed</title>"))
	})
	res, err := scrape(t, NewWebScraping(cfg), b.url("/"))
	require.NoError(t, err)
	assert.Equal(t, "text/html", res.ContentType)
	assert.Equal(t, "Sniffed", res.Title)
}

// hops registers /hop/N redirecting to /hop/N-1; /hop/0 is a page.
func (b *scrapeBundle) hops() {
	b.mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil || n < 0 {
			http.NotFound(w, r)
			return
		}
		if n == 0 {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<title>Arrived</title>"))
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	})
}

func TestWebScrapingRedirects(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.hops()
	h := NewWebScraping(cfg)

	res, err := scrape(t, h, b.url("/hop/5"))
	require.NoError(t, err)
	assert.Equal(t, b.url("/hop/5"), res.URL)
	assert.Equal(t, b.url("/hop/0"), res.FinalURL)
	assert.Equal(t, "Arrived", res.Title)

	_, err = scrape(t, h, b.url("/hop/6"))
	requirePermanent(t, err, safehttp.ErrTooManyRedirects)
}

func TestWebScrapingBodyTooLarge(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	cfg.MaxBodyBytes = 100
	body := "<p>" + strings.Repeat("x", 200) + "</p>"
	b.page("/sized", "text/html", body) // small enough for net/http to send Content-Length
	b.mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(body[:50]))
		w.(http.Flusher).Flush() // no Content-Length: chunked
		_, _ = w.Write([]byte(body[50:]))
	})
	b.page("/exact", "text/html", body[:100])
	h := NewWebScraping(cfg)

	for _, path := range []string{"/sized", "/chunked"} {
		_, err := scrape(t, h, b.url(path))
		requirePermanent(t, err, errBodyTooLarge)
		assert.ErrorContains(t, err, "more than 100 bytes")
	}
	_, err := scrape(t, h, b.url("/exact"))
	require.NoError(t, err, "a body of exactly MaxBodyBytes is accepted")
}

func TestWebScrapingUnsupportedContentType(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.page("/data.json", "application/json", `{"a":1}`)
	b.page("/image", "image/png", "\x89PNG")
	h := NewWebScraping(cfg)

	_, err := scrape(t, h, b.url("/data.json"))
	requirePermanent(t, err, errUnsupportedType)
	assert.ErrorContains(t, err, `unsupported content type "application/json"`)

	_, err = scrape(t, h, b.url("/image"))
	requirePermanent(t, err, errUnsupportedType)
}

func TestWebScrapingStatuses(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	status := func(code int, header http.Header) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for k, v := range header {
				w.Header()[k] = v
			}
			w.WriteHeader(code)
		}
	}
	b.mux.Handle("/404", status(http.StatusNotFound, nil))
	b.mux.Handle("/403", status(http.StatusForbidden, nil))
	b.mux.Handle("/500", status(http.StatusInternalServerError, nil))
	b.mux.Handle("/503", status(http.StatusServiceUnavailable, nil))
	b.mux.Handle("/408", status(http.StatusRequestTimeout, nil))
	b.mux.Handle("/429", status(http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}))
	b.mux.Handle("/503-date", status(http.StatusServiceUnavailable,
		http.Header{"Retry-After": {testNow.Add(90 * time.Second).Format(http.TimeFormat)}}))
	b.mux.Handle("/429-huge", status(http.StatusTooManyRequests, http.Header{"Retry-After": {"86400"}}))
	h := NewWebScraping(cfg)

	for _, path := range []string{"/404", "/403"} {
		_, err := scrape(t, h, b.url(path))
		requirePermanent(t, err, errUnexpectedResponse)
	}
	for _, path := range []string{"/500", "/503", "/408"} {
		_, err := scrape(t, h, b.url(path))
		requireRetryable(t, err)
		var ra *jobs.RetryAfterError
		assert.False(t, errors.As(err, &ra), "%s: no Retry-After header", path)
	}
	for path, want := range map[string]time.Duration{
		"/429":      7 * time.Second,
		"/503-date": 90 * time.Second,
		"/429-huge": time.Hour,
	} {
		_, err := scrape(t, h, b.url(path))
		requireRetryable(t, err)
		var ra *jobs.RetryAfterError
		require.ErrorAs(t, err, &ra, path)
		assert.Equal(t, want, ra.After, path)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 7 ", 7 * time.Second, true},
		{"3600", time.Hour, true},
		{"3601", time.Hour, true},
		{"99999999999999999999999", time.Hour, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{testNow.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{testNow.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{testNow.Add(48 * time.Hour).Format(time.RFC850), time.Hour, true},
	} {
		got, ok := parseRetryAfter(tc.in, testNow)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestWebScrapingRobots(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.page("/robots.txt", "text/plain", "User-agent: *\nDisallow: /\n\nUser-agent: jobhookbot\nDisallow: /private\nAllow: /\n")
	b.page("/public", "text/html", "<title>Public</title>")
	b.page("/private/page", "text/html", "<title>Private</title>")
	b.mux.HandleFunc("/to-private", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/private/page", http.StatusFound)
	})
	h := NewWebScraping(cfg)

	res, err := scrape(t, h, b.url("/public"))
	require.NoError(t, err)
	assert.Equal(t, "Public", res.Title)

	_, err = scrape(t, h, b.url("/private/page"))
	requirePermanent(t, err, errRobotsDisallowed)

	_, err = scrape(t, h, b.url("/to-private"))
	requirePermanent(t, err, errRobotsDisallowed)

	assert.Equal(t, int64(2), b.hits.Load(), "/public and /to-private only")
	assert.Equal(t, int64(1), b.robots.Load(), "robots.txt is cached per host")

	b.clock.Advance(robotsTTL)
	_, err = scrape(t, h, b.url("/public"))
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.robots.Load(), "robots.txt is fetched again after 24h")
}

func TestWebScrapingRobotsStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		status  int
		allowed bool
	}{
		{"404 allows everything", http.StatusNotFound, true},
		{"401 allows everything", http.StatusUnauthorized, true},
		{"500 disallows for now", http.StatusInternalServerError, false},
		{"503 disallows for now", http.StatusServiceUnavailable, false},
		{"429 disallows for now", http.StatusTooManyRequests, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, cfg := setup(t)
			b.mux.HandleFunc("/robots.txt", func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
			})
			b.page("/", "text/html", "<title>Home</title>")
			h := NewWebScraping(cfg)

			res, err := scrape(t, h, b.url("/"))
			if tc.allowed {
				require.NoError(t, err)
				assert.Equal(t, "Home", res.Title)
				return
			}
			requireRetryable(t, err)
			assert.ErrorIs(t, err, errRobotsUnreachable)
			assert.Zero(t, b.hits.Load(), "the page is not fetched")

			// An unreachable robots.txt is not cached.
			_, _ = scrape(t, h, b.url("/"))
			assert.Equal(t, int64(2), b.robots.Load())
		})
	}
}

func TestWebScrapingRobotsCacheBounded(t *testing.T) {
	t.Parallel()
	c := &robotsCache{max: 2, entries: map[string]robotsEntry{}}
	g := allowAllGroup()
	c.put("http://a", g, testNow)
	c.put("http://b", g, testNow.Add(time.Second))
	c.put("http://c", g, testNow.Add(2*time.Second))
	assert.Len(t, c.entries, 2)
	_, ok := c.get("http://a", testNow.Add(3*time.Second))
	assert.False(t, ok, "the oldest entry was dropped")
	_, ok = c.get("http://c", testNow.Add(3*time.Second))
	assert.True(t, ok)
}

func TestWebScrapingTimeout(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	cfg.Timeout = 100 * time.Millisecond
	cfg.IgnoreRobots = true
	b.mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; returns once the client gives up
	})
	h := NewWebScraping(cfg)
	assert.Equal(t, 100*time.Millisecond+jobTimeoutMargin, h.Timeout())

	_, err := scrape(t, h, b.url("/slow"))
	requireRetryable(t, err)
	var netErr interface{ Timeout() bool }
	require.ErrorAs(t, err, &netErr)
	assert.True(t, netErr.Timeout(), "got %v", err)
}

func TestWebScrapingCancelledContext(t *testing.T) {
	t.Parallel()
	b, cfg := setup(t)
	b.page("/", "text/html", "<title>x</title>")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewWebScraping(cfg).Handle(ctx, job(t, b.url("/")))
	requireRetryable(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, b.hits.Load()+b.robots.Load())
}

func TestWebScrapingSSRF(t *testing.T) {
	t.Parallel()
	b, _ := setup(t)
	b.page("/", "text/html", "<title>internal</title>")
	port := b.srv.Listener.Addr().(*net.TCPAddr).Port
	b.mux.HandleFunc("/to-metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	loopbackAnyPort := WebScrapingConfig{
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		AnyPort:       true,
	}

	for _, tc := range []struct {
		name         string
		cfg          WebScrapingConfig
		url          string
		wantRequests int64 // that reach the test server, robots.txt included
	}{
		{"loopback test server", WebScrapingConfig{}, b.url("/"), 0},
		{"loopback test server, any port", WebScrapingConfig{AnyPort: true}, b.url("/"), 0},
		{"loopback test server, robots ignored", WebScrapingConfig{AnyPort: true, IgnoreRobots: true}, b.url("/"), 0},
		{"localhost resolves to loopback", WebScrapingConfig{AnyPort: true}, fmt.Sprintf("http://localhost:%d/", port), 0},
		{"IPv4-mapped IPv6 loopback", WebScrapingConfig{}, "http://[::ffff:127.0.0.1]/", 0},
		{"cloud metadata", WebScrapingConfig{}, "http://169.254.169.254/latest/meta-data/", 0},
		{"private network", WebScrapingConfig{IgnoreRobots: true}, "http://10.0.0.5/admin", 0},
		{"redirect to metadata", loopbackAnyPort, b.url("/to-metadata"), 2},
		{"redirect to metadata, robots ignored", withIgnoreRobots(loopbackAnyPort), b.url("/to-metadata"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.hits.Load() + b.robots.Load()
			_, err := scrape(t, NewWebScraping(tc.cfg), tc.url)
			requirePermanent(t, err, safehttp.ErrBlockedAddress)
			assert.NotContains(t, err.Error(), "169.254.169.254:80", "the resolved ip:port is not shown")
			if strings.Contains(tc.url, "localhost") {
				assert.NotContains(t, err.Error(), "127.0.0.1")
			}
			assert.Equal(t, tc.wantRequests, b.hits.Load()+b.robots.Load()-before)
		})
	}
}

func withIgnoreRobots(cfg WebScrapingConfig) WebScrapingConfig {
	cfg.IgnoreRobots = true
	return cfg
}

func TestValidatePayload(t *testing.T) {
	t.Parallel()
	h := NewWebScraping(WebScrapingConfig{})
	for _, tc := range []struct {
		name    string
		payload string
		field   string // "" for an error without fields
		message string
	}{
		{"not JSON", `{`, "", ""},
		{"empty", ``, "", ""},
		{"null", `null`, "", ""},
		{"array", `["https://example.com/"]`, "", ""},
		{"string", `"https://example.com/"`, "", ""},
		{"trailing data", `{"url":"https://example.com/"} {}`, "", ""},
		{"missing url", `{}`, "url", "is required"},
		{"null url", `{"url": null}`, "url", "is required"},
		{"empty url", `{"url": ""}`, "url", "is required"},
		{"blank url", `{"url": "   "}`, "url", "is required"},
		{"url not a string", `{"url": 42}`, "url", "must be a string"},
		{"relative", `{"url": "/path"}`, "url", "must be an absolute URL"},
		{"no scheme", `{"url": "example.com/page"}`, "url", "must be an absolute URL"},
		{"ftp", `{"url": "ftp://example.com/file"}`, "url", "scheme must be http or https"},
		{"javascript", `{"url": "javascript:alert(1)"}`, "url", "scheme must be http or https"},
		{"file", `{"url": "file:///etc/passwd"}`, "url", "scheme must be http or https"},
		{"opaque", `{"url": "http:example.com"}`, "url", "with a host"},
		{"no host", `{"url": "http:///path"}`, "url", "with a host"},
		{"port only", `{"url": "http://:80/"}`, "url", "must include a host name"},
		{"user info", `{"url": "https://user:pass@example.com/"}`, "url", "must not contain user information"},
		{"user only", `{"url": "https://user@example.com/"}`, "url", "must not contain user information"},
		{"bad port", `{"url": "http://example.com:99999/"}`, "url", "port must be between 1 and 65535"},
		{"port zero", `{"url": "http://example.com:0/"}`, "url", "port must be between 1 and 65535"},
		{"space", `{"url": "http://exa mple.com/"}`, "url", "is not a valid URL"},
		{"control char", `{"url": "http://example.com/\u0001"}`, "url", "is not a valid URL"},
		{"too long", `{"url": "https://example.com/` + strings.Repeat("a", WebScrapingMaxURLLength) + `"}`, "url", "must be at most 2048 characters"},
		{"unknown field", `{"url": "https://example.com/", "depth": 2}`, "depth", "unknown field"},
		{"misspelt field", `{"ulr": "https://example.com/"}`, "ulr", "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := h.ValidatePayload(json.RawMessage(tc.payload))
			var verr *jobs.ValidationError
			require.ErrorAs(t, err, &verr)
			assert.Equal(t, "invalid_payload", verr.Code)
			if tc.field == "" {
				assert.Empty(t, verr.Fields)
				return
			}
			require.NotEmpty(t, verr.Fields)
			var found bool
			for _, f := range verr.Fields {
				if f.Field == tc.field {
					found = true
					assert.Contains(t, f.Message, tc.message)
				}
			}
			assert.True(t, found, "no error for field %q in %v", tc.field, verr.Fields)
		})
	}

	for _, ok := range []string{
		`{"url": "https://example.com/"}`,
		`{"url": "http://example.com:8080/a/b?c=d#frag"}`,
		`{"url": "HTTPS://EXAMPLE.COM"}`,
		`{"url": "https://bücher.example/"}`,
		`{"url": "http://[2001:db8::1]/"}`,
		` {"url": "https://example.com/` + strings.Repeat("a", WebScrapingMaxURLLength-len("https://example.com/")) + `"} `,
	} {
		assert.NoError(t, h.ValidatePayload(json.RawMessage(ok)), ok)
	}
}

func TestWebScrapingInvalidPayloadIsPermanent(t *testing.T) {
	t.Parallel()
	h := NewWebScraping(WebScrapingConfig{})
	_, err := h.Handle(context.Background(), &models.Job{Payload: models.JSON(`{"url": "ftp://x/"}`)})
	requirePermanent(t, err, nil)
	var verr *jobs.ValidationError
	assert.ErrorAs(t, err, &verr)

	_, err = h.Handle(context.Background(), nil)
	requirePermanent(t, err, nil)
}

func TestClip(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "a b c", clip("  a \n\t b   c  ", 10))
	assert.Equal(t, "aaaa bbbb cccc dd…", clip("aaaa bbbb cccc dd eeee", 20))
	assert.Equal(t, "héllo wör…", clip("héllo wörld and more", 10))
	assert.Equal(t, "abcdefghi…", clip("abcdefghijklmnop", 10))
	assert.Equal(t, "ééééé", clip("ééééé", 5))
}

func FuzzValidatePayload(f *testing.F) {
	for _, seed := range []string{
		`{"url": "https://example.com/"}`,
		`{"url": "http://example.com:8080/a?b=c#d"}`,
		`{"url": ""}`,
		`{"url": 1}`,
		`{"url": "ftp://x"}`,
		`{"url": "https://u:p@example.com/"}`,
		`{"url": "http://[::ffff:127.0.0.1]/"}`,
		`{"url": "http:///x"}`,
		`{"url": "https://example.com/", "x": 1}`,
		`{"URL": "https://example.com/"}`,
		`[]`, `null`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	h := NewWebScraping(WebScrapingConfig{})
	f.Fuzz(func(t *testing.T, payload []byte) {
		err := h.ValidatePayload(payload)
		if err != nil {
			var verr *jobs.ValidationError
			if !errors.As(err, &verr) || verr.Code != "invalid_payload" {
				t.Fatalf("want an invalid_payload ValidationError, got %#v", err)
			}
			return
		}
		var p WebScrapingPayload
		if err := json.Unmarshal(payload, &p); err != nil {
			t.Fatalf("accepted a payload that does not decode: %v", err)
		}
		u, err := url.Parse(p.URL)
		if err != nil {
			t.Fatalf("accepted an unparsable URL %q: %v", p.URL, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || len(p.URL) > WebScrapingMaxURLLength {
			t.Fatalf("accepted a bad URL %q", p.URL)
		}
	})
}

func FuzzExtractHTML(f *testing.F) {
	for _, seed := range []string{
		testPage,
		`<title>x</title><a href="//example.com/a">a</a><a href="http://[::1">bad</a>`,
		`<base href="javascript:x"><link rel=canonical href="ftp://x"><h1></h1>`,
		`<svg><title>t</title></svg><template><a href=/t>t</a></template>`,
		strings.Repeat("<div>", 500) + "deep" + strings.Repeat("</div>", 500),
		strings.Repeat("<div>", 1000) + "too deep", // the parser refuses this
		"\xff\xfe<\x00p>",
		`<a href="//::0">bad host</a><a href="//[::1]:x/">bad port</a>`,
	} {
		f.Add([]byte(seed))
	}
	base, err := url.Parse("https://example.com/dir/page")
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, page []byte) {
		res := WebScrapingResult{}
		if err := extractHTML(&res, strings.NewReader(string(page)), base); err != nil {
			return // html.Parse refuses documents nested deeper than 512
		}
		if len(res.Headings) > maxHeadings || len(res.Links) > maxLinks {
			t.Fatalf("too many headings (%d) or links (%d)", len(res.Headings), len(res.Links))
		}
		for _, l := range res.Links {
			u, err := url.Parse(l.Href)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Fragment != "" {
				t.Fatalf("bad link %q", l.Href)
			}
		}
		for _, s := range []string{res.Title, res.Description, res.Excerpt} {
			if utf8.RuneCountInString(s) > maxExcerptRunes {
				t.Fatalf("text too long: %d runes", utf8.RuneCountInString(s))
			}
		}
	})
}

// TestNetworkErrorsNameTheProblem: a host that does not resolve, or a
// connection that fails, is reported in the terms of the URL the user
// gave: never the server's DNS resolver ("lookup x on 10.0.0.2:53") nor an
// address of the server or of the resolved host. The cause is kept for
// errors.As and the retry policy is unchanged.
func TestNetworkErrorsNameTheProblem(t *testing.T) {
	leaks := regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|:53\b|lookup \S+ on |dial tcp|read tcp|write tcp`)
	t.Run("unresolvable host, robots.txt and page", func(t *testing.T) {
		for _, ignoreRobots := range []bool{false, true} {
			cfg := WebScrapingConfig{AllowPrivate: true, Clock: jobs.NewManualClock(testNow), IgnoreRobots: ignoreRobots, resolver: fakedns.NXDomain()}
			h := NewWebScraping(cfg)
			_, err := scrape(t, h, "http://nothing.example/page")
			require.Error(t, err)
			require.Contains(t, err.Error(), "could not resolve host nothing.example (no such host)")
			require.NotRegexp(t, leaks, err.Error())
			var dnsErr *net.DNSError
			require.ErrorAs(t, err, &dnsErr, "the cause is kept")
			requireRetryable(t, err)
		}
	})
	t.Run("refused connection", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		h := NewWebScraping(WebScrapingConfig{AllowPrivate: true, IgnoreRobots: true, Clock: jobs.NewManualClock(testNow)})
		_, err = scrape(t, h, "http://"+addr+"/")
		require.Error(t, err)
		require.Equal(t, "fetch http://"+addr+"/: could not connect to "+addr+" (connection refused)", err.Error())
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		requireRetryable(t, err)
	})
	t.Run("socket errors naming local addresses", func(t *testing.T) {
		local := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 41000}
		remote := &net.TCPAddr{IP: net.IPv4(93, 184, 216, 34), Port: 443}
		for _, tc := range []struct {
			err  error
			want string
		}{
			{&net.OpError{Op: "dial", Net: "tcp", Source: local, Addr: remote, Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)},
				"could not connect to example.com:443 (host unreachable)"},
			{&net.OpError{Op: "dial", Net: "tcp", Addr: remote, Err: os.NewSyscallError("connect", syscall.ENETUNREACH)},
				"could not connect to example.com:443 (network unreachable)"},
			{&net.OpError{Op: "read", Net: "tcp", Source: local, Addr: remote, Err: os.NewSyscallError("read", syscall.ECONNRESET)},
				"the connection to example.com:443 failed while reading (connection reset)"},
			{&net.OpError{Op: "write", Net: "tcp", Source: local, Addr: remote, Err: os.NewSyscallError("write", syscall.EPIPE)},
				"the connection to example.com:443 failed while writing (connection closed)"},
			{&net.OpError{Op: "dial", Net: "tcp", Source: local, Addr: remote, Err: &net.DNSError{Err: "i/o timeout", Name: "example.com", Server: "10.9.9.9:53", IsTimeout: true}},
				"could not resolve host example.com (the DNS lookup timed out)"},
			{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "example.com", Server: "10.9.9.9:53", IsTemporary: true}},
				"could not resolve host example.com (the DNS lookup failed)"},
		} {
			err := classifyFetchError("https://example.com/x", &url.Error{Op: "Get", URL: "https://example.com/x", Err: tc.err})
			require.Equal(t, "fetch https://example.com/x: "+tc.want, err.Error())
			require.NotRegexp(t, leaks, err.Error())
			require.ErrorIs(t, err, tc.err)
			requireRetryable(t, err)
		}
	})
}
