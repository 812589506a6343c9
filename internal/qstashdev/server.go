// Package qstashdev is an in-process QStash server for development and tests.
//
// It speaks the part of the QStash REST API that jobhook uses, with the
// request shapes github.com/upstash/qstash-go v1.0.0 sends: publish (single
// and batch), get and cancel messages, schedules (create/upsert, list, get,
// delete, pause, resume) and signing keys (get, rotate). It delivers messages
// to their destinations with real HTTP calls signed exactly as QStash signs
// them (an HS256 JWT in Upstash-Signature), with QStash's delivery headers,
// retries and backoff.
//
// Time comes from an injected Clock. With the system clock, Start runs a
// background loop that delivers messages and fires schedules on time. With a
// manual clock, tests call Advance (or RunDue), which delivers everything due
// synchronously, so nothing sleeps for a delay. The contract followed is
// shared/docs/qstash.md.
package qstashdev

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Clock tells the time. jobs.SystemClock and jobs.ManualClock satisfy it.
// A clock that also has an Advance(time.Duration) method (such as
// jobs.ManualClock) lets Server.Advance move time.
type Clock interface {
	Now() time.Time
}

// systemClock is the wall clock.
type systemClock struct{}

// Now returns time.Now().
func (systemClock) Now() time.Time { return time.Now() }

// Defaults used when the corresponding Config field is zero.
const (
	// DefaultRetries is the number of retries of a message published
	// without Upstash-Retries (attempts = 1 + retries).
	DefaultRetries = 3
	// DefaultDeliveryTimeout is how long one delivery attempt may take (the
	// Free plan's "Max HTTP Response Duration").
	DefaultDeliveryTimeout = 15 * time.Minute
	// DefaultPollInterval is the longest the background loop sleeps between
	// checks for due work.
	DefaultPollInterval = 500 * time.Millisecond
	// DefaultDeliveryLogSize is how many delivery attempts Deliveries keeps.
	DefaultDeliveryLogSize = 1000
	// DefaultMaxBodyBytes is the largest request body the API accepts.
	DefaultMaxBodyBytes = 10 << 20
	// DefaultMaxConcurrentDeliveries bounds the background loop's parallel
	// delivery attempts.
	DefaultMaxConcurrentDeliveries = 16
	// TokenLifetime is the lifetime of a delivery's signature (exp - iat).
	TokenLifetime = 5 * time.Minute
	// DeduplicationWindow is how long a deduplication id is remembered.
	DeduplicationWindow = 10 * time.Minute
)

// Config configures a Server. Token, CurrentSigningKey and NextSigningKey
// are required; everything else has a default.
type Config struct {
	// Token is the API token clients must send as "Authorization: Bearer
	// <token>" (or as the qstash_token query parameter).
	Token string
	// CurrentSigningKey signs deliveries; NextSigningKey is the key that
	// becomes current on rotation. Neither may be empty: qstash-go's receiver
	// accepts a token signed with an empty key when one of its keys is empty.
	CurrentSigningKey string
	NextSigningKey    string
	// SignWithNextKey signs deliveries with the next key instead of the
	// current one, to test receivers' key rotation fallback.
	SignWithNextKey bool

	// Clock decides when messages are due and schedules fire. Nil means the
	// system clock.
	Clock Clock
	// TokenClock dates the signatures (iat, nbf, exp). Nil means the wall
	// clock, not Clock: receivers such as qstash-go's Receiver.Verify check
	// exp/nbf against the wall clock, so tokens dated by a manual clock
	// would be rejected as soon as it moves more than their lifetime. Set it
	// to the same manual clock to test expiry handling.
	TokenClock Clock

	// HTTPClient makes the deliveries. Nil means a client that does not
	// follow redirects (QStash treats 3xx as a failure).
	HTTPClient *http.Client
	// Logger receives one line per publish, delivery attempt and schedule
	// change. Nil means slog.Default().
	Logger *slog.Logger

	// Backoff returns the delay before retry n (n counts from 1). Nil means
	// DefaultBackoff, QStash's min(86400, e^(2.5n)) seconds. A destination's
	// Retry-After (or X-RateLimit-Reset*) response header takes precedence.
	Backoff func(n int) time.Duration
	// DeliveryTimeout bounds one delivery attempt; Upstash-Timeout can only
	// shorten it. Zero means DefaultDeliveryTimeout.
	DeliveryTimeout time.Duration
	// PollInterval is the longest the background loop waits between checks
	// for due work; it is also woken by publishes. Zero means
	// DefaultPollInterval.
	PollInterval time.Duration
	// DeliveryLogSize is how many attempts Deliveries remembers, and how
	// many messages DeadLetters keeps (oldest dropped first). Zero means
	// DefaultDeliveryLogSize.
	DeliveryLogSize int
	// MaxBodyBytes is the largest request body accepted (413 beyond). Zero
	// means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxConcurrentDeliveries bounds the background loop's parallel
	// deliveries. Zero means DefaultMaxConcurrentDeliveries.
	MaxConcurrentDeliveries int
}

// Server is an in-process QStash. It is an http.Handler serving the REST API
// under /v2/ (also when mounted below a prefix), and it delivers messages
// either from its background loop (Start) or synchronously (RunDue, Advance).
// All methods are safe for concurrent use.
type Server struct {
	cfg        Config
	clock      Clock
	tokenClock Clock
	client     *http.Client
	log        *slog.Logger
	backoff    func(int) time.Duration

	mu          sync.Mutex
	token       string
	current     string
	next        string
	messages    map[string]*message
	schedules   map[string]*schedule
	dedup       map[string]dedupEntry
	deliveries  []Delivery
	deadLetters []Message
	stats       Stats
	changed     chan struct{} // closed and replaced whenever state changes

	wake chan struct{}

	ownClient bool // client was made by New; Close closes its idle connections

	runMu   sync.Mutex
	running bool
	cancel  context.CancelFunc
	done    chan struct{}
	inner   sync.WaitGroup // background deliveries in flight
}

// New validates cfg and returns a Server. It does not start delivering: call
// Start (system clock) or Advance/RunDue (manual clock).
func New(cfg Config) (*Server, error) {
	if cfg.Token == "" {
		return nil, errors.New("qstashdev: Config.Token is empty")
	}
	if cfg.CurrentSigningKey == "" || cfg.NextSigningKey == "" {
		return nil, errors.New("qstashdev: Config.CurrentSigningKey and Config.NextSigningKey must both be set (an empty key would let receivers accept tokens signed with an empty key)")
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.DeliveryLogSize <= 0 {
		cfg.DeliveryLogSize = DefaultDeliveryLogSize
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxConcurrentDeliveries <= 0 {
		cfg.MaxConcurrentDeliveries = DefaultMaxConcurrentDeliveries
	}
	s := &Server{
		cfg:        cfg,
		clock:      cfg.Clock,
		tokenClock: cfg.TokenClock,
		client:     cfg.HTTPClient,
		log:        cfg.Logger,
		backoff:    cfg.Backoff,
		token:      cfg.Token,
		current:    cfg.CurrentSigningKey,
		next:       cfg.NextSigningKey,
		messages:   map[string]*message{},
		schedules:  map[string]*schedule{},
		dedup:      map[string]dedupEntry{},
		changed:    make(chan struct{}),
		wake:       make(chan struct{}, 1),
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if s.tokenClock == nil {
		s.tokenClock = systemClock{}
	}
	if s.client == nil {
		// An own connection pool, closed by Close, rather than
		// http.DefaultTransport's, shared with everything else in the process.
		var rt http.RoundTripper = http.DefaultTransport
		if t, ok := http.DefaultTransport.(*http.Transport); ok {
			rt = t.Clone()
		}
		s.client = &http.Client{
			Transport:     rt,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		s.ownClient = true
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "qstashdev")
	if s.backoff == nil {
		s.backoff = DefaultBackoff
	}
	return s, nil
}

// Token returns the API token clients must present.
func (s *Server) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// SigningKeys returns the current and next signing keys.
func (s *Server) SigningKeys() (current, next string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, s.next
}

// RotateKeys rolls the signing keys as QStash does: the next key becomes
// current and a fresh next key is generated. It returns the new pair.
func (s *Server) RotateKeys() (current, next string, err error) {
	fresh, err := NewSigningKey()
	if err != nil {
		return "", "", fmt.Errorf("qstashdev: rotate keys: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current, s.next = s.next, fresh
	s.log.Info("signing keys rotated")
	return s.current, s.next, nil
}

// notifyLocked wakes WaitFor callers. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// poke wakes the background loop without blocking.
func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start runs the background loop that fires schedules and delivers due
// messages until ctx is done or Close is called. It returns an error if the
// loop is already running.
func (s *Server) Start(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.running {
		return errors.New("qstashdev: Start: already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	s.running = true
	s.cancel = cancel
	s.done = make(chan struct{})
	go s.loop(ctx, s.done)
	s.log.Info("delivery loop started")
	return nil
}

// Close stops the background loop and waits for its deliveries in flight,
// whose requests are cancelled, then closes the delivery client's idle
// connections (when New made the client). It is safe to call more than once and on a
// server that was never started.
func (s *Server) Close() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.running {
		s.cancel()
		<-s.done
		s.inner.Wait()
		s.running = false
		s.log.Info("delivery loop stopped")
	}
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// Serve serves the API on ln and runs the delivery loop (unless already
// started) until ctx is done, then shuts both down. It returns nil after a
// clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	startedHere := false
	if err := s.Start(ctx); err == nil {
		startedHere = true
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(shutCtx); err != nil {
			serveErr = fmt.Errorf("qstashdev: shutdown: %w", err)
		}
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("qstashdev: serve: %w", err)
		}
	}
	if startedHere {
		_ = s.Close()
	}
	return serveErr
}

// ListenAndServe listens on addr (e.g. "127.0.0.1:8080") and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("qstashdev: listen on %s: %w", addr, err)
	}
	s.log.Info("listening", "addr", ln.Addr().String())
	return s.Serve(ctx, ln)
}

// apiError is an error answered to an API client as {"error": msg}.
type apiError struct {
	status int
	msg    string
}

// Error returns the message sent to the client.
func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// writeJSON answers v as JSON with status.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Debug("write response", "err", err)
	}
}

// writeError answers QStash's error shape, {"error": "..."}.
func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	s.writeJSON(w, e.status, map[string]string{"error": e.msg})
}

// requestTarget returns the raw (still escaped) path of r starting at "/v2",
// and its raw query. It prefers r.RequestURI, which is exactly what the
// client sent, so a destination URL embedded in the path keeps its "//" and
// escapes; it tolerates the handler being mounted below a prefix.
func requestTarget(r *http.Request) (path, query string, ok bool) {
	if u := r.RequestURI; strings.HasPrefix(u, "/") {
		path, query, _ = strings.Cut(u, "?")
	} else {
		path, query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	if i := strings.Index(path, "/v2/"); i >= 0 {
		return path[i:], query, true
	}
	if strings.HasSuffix(path, "/v2") {
		return "/v2/", query, true
	}
	return "", "", false
}

// authorized checks the Bearer token or the qstash_token query parameter.
func (s *Server) authorized(r *http.Request, query string) bool {
	s.mu.Lock()
	want := s.token
	s.mu.Unlock()
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found {
		got = queryValue(query, "qstash_token")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// queryValue returns the unescaped value of key in the raw query, or "".
func queryValue(rawQuery, key string) string {
	for part := range strings.SplitSeq(rawQuery, "&") {
		k, v, _ := strings.Cut(part, "=")
		if k == key {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
			return v
		}
	}
	return ""
}

// withoutQueryKey removes every key=… pair from a raw query, keeping the
// rest byte for byte.
func withoutQueryKey(rawQuery, key string) string {
	if rawQuery == "" {
		return ""
	}
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, p := range parts {
		if k, _, _ := strings.Cut(p, "="); k != key {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, "&")
}

// ServeHTTP serves the QStash REST API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, query, ok := requestTarget(r)
	if !ok {
		s.writeError(w, errorf(http.StatusNotFound, "not found: %s %s (the QStash API is under /v2/)", r.Method, r.URL.Path))
		return
	}
	if !s.authorized(r, query) {
		s.writeError(w, errorf(http.StatusUnauthorized, "Unauthorized: missing or invalid token (send Authorization: Bearer <QSTASH_TOKEN>)"))
		return
	}
	query = withoutQueryKey(query, "qstash_token")
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.writeError(w, errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		s.writeError(w, errorf(http.StatusBadRequest, "read request body: %v", err))
		return
	}
	req := apiRequest{r: r, body: body, query: query, callerIP: callerIP(r)}
	rest := strings.TrimPrefix(path, "/v2/")
	resource, rest, _ := strings.Cut(rest, "/")
	var status int
	var resp any
	var aerr *apiError
	switch strings.ToLower(resource) {
	case "publish":
		status, resp, aerr = s.handlePublish(req, rest)
	case "batch":
		status, resp, aerr = s.handleBatch(req, rest)
	case "messages":
		status, resp, aerr = s.handleMessages(req, rest)
	case "schedules":
		status, resp, aerr = s.handleSchedules(req, rest)
	case "keys":
		status, resp, aerr = s.handleKeys(req, rest)
	case "rotate":
		if rest != "" {
			aerr = errorf(http.StatusNotFound, "not found: %s %s", r.Method, path)
			break
		}
		status, resp, aerr = s.handleRotate(req)
	default:
		aerr = errorf(http.StatusNotFound, "not found: %s %s (qstashdev implements publish, batch, messages, schedules and keys)", r.Method, path)
	}
	if aerr != nil {
		s.log.Info("api error", "method", r.Method, "path", path, "status", aerr.status, "error", aerr.msg)
		s.writeError(w, aerr)
		return
	}
	if resp == nil {
		w.WriteHeader(status)
		return
	}
	s.writeJSON(w, status, resp)
}

// Transport returns an http.RoundTripper that serves every request with the
// server's handler in-process, without a socket, whatever the URL's host.
// Give it to the client, e.g. qstash.NewClientWith(qstash.Options{Url:
// "http://qstashdev", Token: srv.Token(), Client: &http.Client{Transport:
// srv.Transport()}}). Deliveries still go out through Config.HTTPClient.
func (s *Server) Transport() http.RoundTripper { return handlerTransport{s: s} }

type handlerTransport struct{ s *Server }

// RoundTrip serves req with the Server's handler.
func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.RequestURI = req.URL.RequestURI()
	r.RemoteAddr = "127.0.0.1:0"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.s.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// apiRequest is what the handlers need from an API request.
type apiRequest struct {
	r        *http.Request
	body     []byte
	query    string // raw query without qstash_token
	callerIP string
}

// callerIP returns the client's IP address from RemoteAddr.
func callerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// parseCron parses a standard 5-field cron spec (optionally prefixed with
// CRON_TZ=<zone>), guarding against robfig/cron's panic on a prefix without
// a following space.
func parseCron(spec string) (sched cron.Schedule, err error) {
	defer func() {
		if p := recover(); p != nil {
			sched, err = nil, fmt.Errorf("malformed cron expression %q", spec)
		}
	}()
	sched, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("invalid cron expression %q: %w", spec, err)
	}
	return sched, nil
}
