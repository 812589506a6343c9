package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const (
	testJWTSecret    = "handlers-test-jwt-secret"
	testWorkerSecret = "handlers-test-worker-secret"
)

// echoHandler is the test job type "echo": its payload needs a string
// field "text".
type echoHandler struct{}

func (echoHandler) Handle(_ context.Context, job *models.Job) (json.RawMessage, error) {
	return json.RawMessage(job.Payload), nil
}

func (echoHandler) ValidatePayload(payload json.RawMessage) error {
	var p struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(payload, &p); err != nil || p.Text == nil {
		return &jobs.ValidationError{
			Code:    "invalid_payload",
			Message: "payload.text must be a string",
			Fields:  []jobs.FieldError{{Field: "payload.text", Message: "must be a string"}},
		}
	}
	return nil
}

// fakeDrainer stands in for jobs.Worker: it records each call and answers
// with Summary and Err, or panics when Panic is set.
type fakeDrainer struct {
	mu      sync.Mutex
	calls   []drainCall
	Summary jobs.DrainSummary
	Err     error
	Panic   bool
}

type drainCall struct {
	budget time.Duration
	// ctxErr is the context's error when Drain was called.
	ctxErr error
	// cancellable reports whether the context could ever be cancelled.
	cancellable bool
}

func (d *fakeDrainer) Drain(ctx context.Context, budget time.Duration) (jobs.DrainSummary, error) {
	d.mu.Lock()
	d.calls = append(d.calls, drainCall{budget: budget, ctxErr: ctx.Err(), cancellable: ctx.Done() != nil})
	d.mu.Unlock()
	if d.Panic {
		panic("drainer exploded: secret internals")
	}
	return d.Summary, d.Err
}

func (d *fakeDrainer) Calls() []drainCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]drainCall(nil), d.calls...)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bundle is one test's app on one backend.
type bundle struct {
	b       testenv.Backend
	eng     *jobs.Engine
	svc     *jobs.Service
	drainer *fakeDrainer
	app     *echo.Echo
	logs    *syncBuffer
}

type setupOption func(*handlers.Config)

// realWorker builds a second engine on b with cfg's registry and logger
// and returns its Worker, to serve /api/workers for real.
func realWorker(t testing.TB, b testenv.Backend, cfg *handlers.Config) *jobs.Worker {
	t.Helper()
	return jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: cfg.Service.Registry(), Logger: cfg.Logger, JobTimeout: 10 * time.Second}).Worker()
}

// setup builds the real jobs.Service (an engine that runs no drains of its
// own) on b and the Echo app in front of it.
func setup(t testing.TB, b testenv.Backend, opts ...setupOption) *bundle {
	t.Helper()
	reg := jobs.NewRegistry()
	reg.MustRegister("echo", echoHandler{})
	reg.MustRegister("noop", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		return nil, nil
	}))
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: logger, DisableTriggers: true, JobTimeout: 10 * time.Second})
	svc := eng.Service()
	d := &fakeDrainer{Summary: jobs.DrainSummary{Claimed: 2, Completed: 1, Retried: 1, Remaining: 3, DurationMs: 12}}
	cfg := handlers.Config{
		Service:      svc,
		Worker:       d,
		Verifier:     auth.NewHS256Verifier([]byte(testJWTSecret)),
		WorkerSecret: testWorkerSecret,
		DrainBudget:  30 * time.Second,
		Logger:       logger,
		APIKeys:      apikeys.New(b.DB.Gorm, nil),
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &bundle{b: b, eng: eng, svc: svc, drainer: d, app: handlers.New(cfg), logs: logs}
}

// token mints a valid token for user.
func token(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testJWTSecret), user, time.Hour, time.Now())
	require.NoError(t, err)
	return tok
}

// request is one HTTP call to the app.
type request struct {
	method string
	path   string
	body   io.Reader
	// auth is the Authorization header; empty sends none.
	auth    string
	headers map[string]string
	ctx     context.Context
}

func (bb *bundle) do(t testing.TB, r request) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(r.method, r.path, r.body)
	if r.ctx != nil {
		req = req.WithContext(r.ctx)
	}
	if r.body != nil {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	if r.auth != "" {
		req.Header.Set(echo.HeaderAuthorization, r.auth)
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	bb.app.ServeHTTP(rec, req)
	return rec
}

// asUser sends a request with a valid token for user.
func (bb *bundle) asUser(t testing.TB, user, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := request{method: method, path: path, auth: "Bearer " + token(t, user)}
	if body != "" {
		r.body = strings.NewReader(body)
	}
	return bb.do(t, r)
}

// createJob posts a job for user and returns its id, requiring status.
func (bb *bundle) createJob(t testing.TB, user, body string, wantStatus int) handlers.CreateJobResponse {
	t.Helper()
	rec := bb.asUser(t, user, http.MethodPost, "/api/jobs", body)
	require.Equal(t, wantStatus, rec.Code, rec.Body.String())
	var resp handlers.CreateJobResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &resp))
	require.Positive(t, resp.JobID)
	return resp
}

// errorBody is what every error response must look like.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Fields  []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"fields"`
	} `json:"error"`
}

// requireDrainUnavailable checks the answer of a POST /api/workers whose
// drain a backend cut short: 503 backend_unavailable, the error beside the
// drain summary, and no internals in it. It returns the summary.
func requireDrainUnavailable(t testing.TB, rec *httptest.ResponseRecorder) jobs.DrainSummary {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, "body: %s", rec.Body.String())
	var body struct {
		Error errorBody `json:"error"`
		jobs.DrainSummary
	}
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &top), rec.Body.String())
	for _, key := range []string{"error", "claimed", "completed", "unrecorded", "leftForTime", "remaining"} {
		require.Contains(t, top, key, rec.Body.String())
	}
	var eb errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &eb))
	require.Equal(t, "backend_unavailable", eb.Error.Code, rec.Body.String())
	require.NotEmpty(t, eb.Error.Message)
	for _, leak := range []string{"goroutine", ".go:", "secret internals", "sql", "redis:", "dial tcp", "gorm"} {
		require.NotContains(t, strings.ToLower(rec.Body.String()), leak)
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	return body.DrainSummary
}

// requireError checks an error response: status, JSON content type, the
// shape {"error":{"code","message"}} with no other top-level key, and no
// internals in it.
func requireError(t testing.TB, rec *httptest.ResponseRecorder, status int, code string) errorBody {
	t.Helper()
	require.Equal(t, status, rec.Code, "body: %s", rec.Body.String())
	require.True(t, strings.HasPrefix(rec.Header().Get(echo.HeaderContentType), echo.MIMEApplicationJSON),
		"content type %q", rec.Header().Get(echo.HeaderContentType))
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &top), rec.Body.String())
	require.Len(t, top, 1, "only the error key: %s", rec.Body.String())
	var eb errorBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &eb))
	require.Equal(t, code, eb.Error.Code, rec.Body.String())
	require.NotEmpty(t, eb.Error.Message)
	for _, leak := range []string{"goroutine", ".go:", "secret internals", "sql", "redis:", "dial tcp", "gorm"} {
		require.NotContains(t, strings.ToLower(rec.Body.String()), leak)
	}
	if status == http.StatusUnauthorized {
		require.Equal(t, "Bearer", rec.Header().Get(echo.HeaderWWWAuthenticate))
	}
	return eb
}

// counts is what the backends hold: rows in the jobs table and ids in the
// queue's sets.
type counts struct {
	rows  int64
	queue jobs.Depth
}

func (bb *bundle) counts(t testing.TB) counts {
	t.Helper()
	var c counts
	require.NoError(t, bb.b.DB.Gorm.Model(&models.Job{}).Count(&c.rows).Error)
	d, err := bb.eng.Depth(context.Background())
	require.NoError(t, err)
	c.queue = d
	return c
}

// pendingIDs reads the queue's pending set from Redis, in the order a
// claim pops it.
func (bb *bundle) pendingIDs(t testing.TB) []int64 {
	t.Helper()
	members, err := bb.b.Redis.ZRange(context.Background(), bb.b.Prefix+"pending", 0, -1).Result()
	require.NoError(t, err)
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i], err = strconv.ParseInt(m, 10, 64)
		require.NoError(t, err)
	}
	return ids
}

// unknownLength hides a body's length, so the server must enforce the
// limit while reading (no Content-Length).
type unknownLength struct{ r io.Reader }

func (u unknownLength) Read(p []byte) (int, error) { return u.r.Read(p) }

var errBoom = errors.New("boom: secret internals")
