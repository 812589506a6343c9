package qstashdev

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // CRON_TZ tests need zone data

	"github.com/stretchr/testify/require"
	"github.com/upstash/qstash-go"
)

func TestMain(m *testing.M) {
	// qstash-go lets QSTASH_URL override Options.Url; never let an exported
	// one send the tests to a real QStash.
	os.Unsetenv("QSTASH_URL")
	os.Exit(m.Run())
}

// testClock is a manual clock (like jobs.ManualClock, which this package
// does not import so that its tests do not depend on jobs compiling).
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// destRequest is one request received by the test destination.
type destRequest struct {
	Method     string
	RequestURI string
	URL        string // absolute URL the request was sent to
	Header     http.Header
	Body       []byte
	VerifyErr  error // qstash-go Receiver.Verify result
}

// destination is an httptest server standing in for jobhook's
// /api/workers: it verifies every request with qstash-go's receiver.
type destination struct {
	srv *httptest.Server

	mu       sync.Mutex
	receiver *qstash.Receiver
	reqs     []destRequest
	respond  func(n int) (int, http.Header)
}

func newDestination(t *testing.T, current, next string) *destination {
	t.Helper()
	d := &destination{receiver: qstash.NewReceiver(current, next)}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d.mu.Lock()
		full := d.srv.URL + r.RequestURI
		verr := d.receiver.Verify(qstash.VerifyOptions{
			Signature: r.Header.Get("Upstash-Signature"),
			Url:       full,
			Body:      string(body),
			Tolerance: 5 * time.Second,
		})
		n := len(d.reqs)
		d.reqs = append(d.reqs, destRequest{Method: r.Method, RequestURI: r.RequestURI, URL: full, Header: r.Header.Clone(), Body: body, VerifyErr: verr})
		respond := d.respond
		d.mu.Unlock()
		status, h := http.StatusOK, http.Header(nil)
		if verr != nil {
			status = http.StatusUnauthorized
		} else if respond != nil {
			status, h = respond(n)
		}
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(d.srv.Close)
	return d
}

func (d *destination) requests() []destRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]destRequest(nil), d.reqs...)
}

func (d *destination) setRespond(f func(n int) (int, http.Header)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.respond = f
}

func (d *destination) setReceiver(r *qstash.Receiver) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.receiver = r
}

// requireVerified checks that every request the destination got carried a
// valid signature.
func (d *destination) requireVerified(t *testing.T) {
	t.Helper()
	for i, r := range d.requests() {
		require.NoError(t, r.VerifyErr, "request %d to %s failed signature verification", i, r.URL)
	}
}

// testBundle is a qstashdev server behind httptest, a manual clock, the
// real qstash-go client pointed at it, and a verifying destination.
type testBundle struct {
	clock  *testClock
	srv    *Server
	api    *httptest.Server
	client *qstash.Client
	http   *http.Client // for raw API calls
	dest   *destination
	keys   Keys
	ctx    context.Context
}

var start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func setup(t *testing.T, opts ...func(*Config)) *testBundle {
	t.Helper()
	keys, err := GenerateKeys()
	require.NoError(t, err)
	clock := &testClock{now: start}
	cfg := Config{
		Token:             keys.Token,
		CurrentSigningKey: keys.CurrentSigningKey,
		NextSigningKey:    keys.NextSigningKey,
		Clock:             clock,
		Logger:            slogForTest(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	api := httptest.NewServer(srv)
	t.Cleanup(api.Close)
	httpClient := testHTTPClient(t)
	client := qstash.NewClientWith(qstash.Options{Url: api.URL, Token: keys.Token, Client: httpClient})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return &testBundle{
		clock: clock, srv: srv, api: api, client: client, http: httpClient, keys: keys, ctx: ctx,
		dest: newDestination(t, keys.CurrentSigningKey, keys.NextSigningKey),
	}
}

// advance moves the clock and delivers what is due.
func (b *testBundle) advance(t *testing.T, d time.Duration) {
	t.Helper()
	_, err := b.srv.Advance(b.ctx, d)
	require.NoError(t, err)
}

// runDue delivers what is due now.
func (b *testBundle) runDue(t *testing.T) {
	t.Helper()
	_, err := b.srv.RunDue(b.ctx)
	require.NoError(t, err)
}

// raw sends a request to the API with the bundle's token unless header
// sets Authorization.
func (b *testBundle) raw(t *testing.T, method, path string, header http.Header, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(b.ctx, method, b.api.URL+path, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+b.keys.Token)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// slogForTest logs warnings and errors to the test's output.
func slogForTest(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// requireDestCount checks how many requests the destination got, and on
// failure shows what the server recorded for each attempt.
func (b *testBundle) requireDestCount(t *testing.T, n int, msgAndArgs ...any) {
	t.Helper()
	if got := len(b.dest.requests()); got != n {
		for i, d := range b.srv.Deliveries() {
			t.Logf("attempt %d: message %s retried %d at %s: status %d err %q outcome %s response headers %v",
				i, d.MessageID, d.Retried, d.At.Format(time.RFC3339), d.Status, d.Err, d.Outcome, d.ResponseHeader)
		}
		require.Len(t, b.dest.requests(), n, msgAndArgs...)
	}
}

// testHTTPClient returns a client with its own connection pool. Clients on
// http.DefaultTransport break at random in parallel tests: every
// httptest.Server.Close calls DefaultTransport.CloseIdleConnections, which
// can fail a request that just picked an idle connection ("http:
// CloseIdleConnections called").
func testHTTPClient(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
