package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/internal/tracing"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

const (
	jwtSecret    = "trace-e2e-jwt-secret"
	workerSecret = "trace-e2e-worker-secret"
	waitLimit    = 20 * time.Second
)

// system is jobhook in one process on one backend: the HTTP layer (traced
// like the app's server), the engine, the in-process QStash delivering
// over real HTTP, and a provider (a web page) that records the
// traceparent of each request.
type system struct {
	rec      *tracetest.SpanRecorder // nil when tracing is off
	dev      *qstashdev.Server
	service  *jobs.Service
	server   *httptest.Server
	provider *provider
	logs     *lockedBuffer
	token    string
}

// provider is the page the web_scraping jobs fetch.
type provider struct {
	srv *httptest.Server
	mu  sync.Mutex
	// parents holds the traceparent header of each request ("" when none).
	parents []string
}

func newProvider(t *testing.T) *provider {
	p := &provider{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.parents = append(p.parents, r.Header.Get("Traceparent"))
		p.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>traced</title></head><body>hi</body></html>`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) received() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.parents...)
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (b *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	raw := append([]byte(nil), b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(raw, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m), string(l))
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newSystem(t *testing.T, b testenv.Backend, traced bool) *system {
	t.Helper()
	s := &system{provider: newProvider(t), logs: &lockedBuffer{}}
	var tp trace.TracerProvider
	var handler slog.Handler = slog.NewJSONHandler(s.logs, nil)
	if traced {
		s.rec = tracetest.NewSpanRecorder()
		tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.rec))
		handler = tracing.LogHandler(handler)
	}
	log := slog.New(handler)
	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	s.dev, err = qstashdev.New(qstashdev.Config{
		Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPClient: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	})
	require.NoError(t, err)
	require.NoError(t, s.dev.Start(context.Background()))
	t.Cleanup(func() { _ = s.dev.Close() })

	reg := jobs.NewRegistry()
	require.NoError(t, reg.Register(tasks.TypeWebScraping, tasks.NewWebScraping(tasks.WebScrapingConfig{
		AllowPrivate: true, IgnoreRobots: true, TracerProvider: tp})))
	// spawn creates one web_scraping child of itself.
	reg.MustRegister("spawn", jobs.HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
		payload, _ := json.Marshal(map[string]string{"url": s.provider.srv.URL + "/child"})
		_, err := jobs.SpawnChildren(ctx, []jobs.ChildSpec{{Type: tasks.TypeWebScraping, Payload: payload}})
		return nil, err
	}))

	var app http.Handler
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { app.ServeHTTP(w, r) }))
	t.Cleanup(s.server.Close)
	workerURL := s.server.URL + "/api/workers"
	client, err := qstashclient.New(qstashclient.Config{
		BaseURL: "http://qstash.test", Token: keys.Token, WorkerURL: workerURL,
		HTTPClient: &http.Client{Transport: s.dev.Transport()}, TracerProvider: tp,
	})
	require.NoError(t, err)
	engine, err := jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log,
		Publisher: client, TriggerWindow: time.Second, TracerProvider: tp})
	require.NoError(t, err)
	require.NoError(t, engine.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = engine.Shutdown(ctx)
	})
	s.service = engine.Service()
	check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey, URL: workerURL})
	require.NoError(t, err)
	app = tracing.Handler(handlers.New(handlers.Config{
		Service: s.service, Worker: engine.Worker(), Verifier: auth.NewHS256Verifier([]byte(jwtSecret)),
		WorkerSecret: workerSecret, WorkerAuth: []handlers.WorkerAuthFunc{check}, Logger: log,
	}), tp)
	s.token, err = auth.MintHS256([]byte(jwtSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	return s
}

// post creates a job through the API, sending traceparent when not empty.
func (s *system) post(t *testing.T, body, traceparent string) int64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.server.URL+"/api/jobs", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusCreated, res.StatusCode, string(raw))
	var out struct {
		JobID int64 `json:"jobId"`
	}
	require.NoError(t, json.Unmarshal(raw, &out))
	return out.JobID
}

// apiJob reads a job through GET /api/jobs/:id.
func (s *system) apiJob(t *testing.T, id int64) models.Job {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/jobs/%d", s.server.URL, id), nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusOK, res.StatusCode, string(raw))
	var job models.Job
	require.NoError(t, json.Unmarshal(raw, &job))
	return job
}

func (s *system) waitCompleted(t *testing.T, id int64) {
	t.Helper()
	testenv.WaitFor(t, waitLimit, fmt.Sprintf("job %d to complete", id), func() bool {
		job, err := s.service.Get(context.Background(), "alice", id)
		return err == nil && job.Status == models.StatusCompleted
	})
}

// span waits for an ended span that match accepts, and returns it.
func (s *system) span(t *testing.T, what string, match func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	testenv.WaitFor(t, waitLimit, "span "+what, func() bool {
		for _, sp := range s.rec.Ended() {
			if match(sp) {
				found = sp
				return true
			}
		}
		return false
	})
	return found
}

// attr is a span's attribute by key, as a Go value.
func attr(sp sdktrace.ReadOnlySpan, key string) any {
	for _, kv := range sp.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.AsInterface()
		}
	}
	return nil
}

func traceParent(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
}

// deliveryWith waits for a delivery of the in-process QStash whose body
// contains body, and returns its traceparent header.
func (s *system) deliveryWith(t *testing.T, body string) string {
	t.Helper()
	var got string
	testenv.WaitFor(t, waitLimit, "a delivery of "+body, func() bool {
		for _, d := range s.dev.Deliveries() {
			if strings.Contains(string(d.Body), body) && d.Status == http.StatusOK {
				got = d.Header.Get("Traceparent")
				return true
			}
		}
		return false
	})
	return got
}

// TestTraceFromCreateToProvider: one trace holds the create request, its
// create span (whose traceparent the job stores and GET /api/jobs/:id
// shows), the trigger's publish (forwarded by QStash as traceparent), the
// delivery's request and drain, the attempt (the child of the stored
// create span, linked to the drain) and the provider call, whose
// traceparent the provider receives; the log lines of the request and the
// attempt carry the ids.
func TestTraceFromCreateToProvider(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, true)
		const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		id := s.post(t, fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, s.provider.srv.URL+"/page"), "00-"+tid+"-"+sid+"-01")
		s.waitCompleted(t, id)

		inTrace := func(name string) func(sdktrace.ReadOnlySpan) bool {
			return func(sp sdktrace.ReadOnlySpan) bool {
				return sp.Name() == name && sp.SpanContext().TraceID().String() == tid
			}
		}
		request := s.span(t, "POST /api/jobs", inTrace("POST /api/jobs"))
		require.Equal(t, sid, request.Parent().SpanID().String())
		require.True(t, request.Parent().IsRemote())
		require.Equal(t, trace.SpanKindServer, request.SpanKind())
		require.EqualValues(t, http.StatusCreated, attr(request, "http.response.status_code"))
		require.Equal(t, "/api/jobs", attr(request, "http.route"))
		create := s.span(t, "jobs.create", inTrace("jobs.create"))
		require.Equal(t, request.SpanContext().SpanID(), create.Parent().SpanID())
		require.EqualValues(t, id, attr(create, "jobhook.job.id"))

		// The job stores the create span's traceparent, and shows it.
		require.Equal(t, traceParent(create.SpanContext()), s.apiJob(t, id).TraceParent)

		// The trigger's publish is a client span of the create; QStash
		// forwards its traceparent to the worker endpoint.
		forwarded := s.deliveryWith(t, `"trigger"`)
		require.True(t, strings.HasPrefix(forwarded, "00-"+tid+"-"), forwarded)
		publish := s.span(t, "the trigger's publish", func(sp sdktrace.ReadOnlySpan) bool {
			return traceParent(sp.SpanContext()) == forwarded
		})
		require.Equal(t, trace.SpanKindClient, publish.SpanKind())
		require.Equal(t, create.SpanContext().SpanID(), publish.Parent().SpanID())
		worker := s.span(t, "POST /api/workers", inTrace("POST /api/workers"))
		require.Equal(t, publish.SpanContext().SpanID(), worker.Parent().SpanID())
		require.True(t, worker.Parent().IsRemote())
		drain := s.span(t, "jobs.drain", inTrace("jobs.drain"))
		require.Equal(t, worker.SpanContext().SpanID(), drain.Parent().SpanID())
		require.EqualValues(t, 1, attr(drain, "jobhook.drain.completed"))

		// The attempt: the child of the stored create span, linked to the
		// drain that ran it.
		attempt := s.span(t, "the attempt", inTrace("jobs.attempt web_scraping"))
		require.Equal(t, create.SpanContext().SpanID(), attempt.Parent().SpanID())
		require.Len(t, attempt.Links(), 1)
		require.Equal(t, drain.SpanContext(), attempt.Links()[0].SpanContext)
		require.EqualValues(t, id, attr(attempt, "jobhook.job.id"))
		require.Equal(t, "web_scraping", attr(attempt, "jobhook.job.type"))
		require.EqualValues(t, 1, attr(attempt, "jobhook.job.attempt"))
		require.Equal(t, "completed", attr(attempt, "jobhook.job.outcome"))

		// The provider call: a client span of the attempt, whose
		// traceparent the provider received.
		call := s.span(t, "the provider call", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.SpanKind() == trace.SpanKindClient && sp.Parent().SpanID() == attempt.SpanContext().SpanID()
		})
		require.Equal(t, []string{traceParent(call.SpanContext())}, s.provider.received())

		// Log lines carry the ids of their span.
		completed := s.logs.lines(t, "job completed")
		require.Len(t, completed, 1)
		require.Equal(t, tid, completed[0]["trace_id"])
		require.Equal(t, attempt.SpanContext().SpanID().String(), completed[0]["span_id"])
		var logged bool
		for _, l := range s.logs.lines(t, "request") {
			if l["route"] == "/api/jobs" && l["method"] == http.MethodPost {
				logged = true
				require.Equal(t, tid, l["trace_id"])
				require.Equal(t, request.SpanContext().SpanID().String(), l["span_id"])
			}
		}
		require.True(t, logged, "the create's request line")
		created := s.logs.lines(t, "job created")
		require.Len(t, created, 1)
		require.Equal(t, create.SpanContext().SpanID().String(), created[0]["span_id"])
	})
}

// TestTraceOfScheduledJobAndChild: a scheduled job's delayed delivery
// carries its stored traceparent, so its drain is in the create's trace;
// a child created by a job's attempt stores a create span that is the
// attempt's child.
func TestTraceOfScheduledJobAndChild(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, true)
		const tid = "0af7651916cd43dd8448eb211c80319c"
		at := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
		id := s.post(t, fmt.Sprintf(`{"type":"spawn","scheduledFor":%q}`, at), "00-"+tid+"-b7ad6b7169203331-01")
		s.waitCompleted(t, id)
		stored := s.apiJob(t, id).TraceParent
		require.True(t, strings.HasPrefix(stored, "00-"+tid+"-"), stored)

		// The delayed delivery: published as a client span of the stored
		// create span, forwarded to the worker endpoint.
		forwarded := s.deliveryWith(t, fmt.Sprintf(`"jobId":%d`, id))
		require.True(t, strings.HasPrefix(forwarded, "00-"+tid+"-"), forwarded)
		publish := s.span(t, "the delayed publish", func(sp sdktrace.ReadOnlySpan) bool {
			return traceParent(sp.SpanContext()) == forwarded
		})
		require.Equal(t, stored, traceParent(trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: publish.Parent().TraceID(), SpanID: publish.Parent().SpanID(), TraceFlags: trace.FlagsSampled})))
		s.span(t, "the delivery's drain", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.Name() == "jobs.drain" && sp.SpanContext().TraceID().String() == tid
		})
		attempt := s.span(t, "the parent's attempt", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.Name() == "jobs.attempt spawn" && attr(sp, "jobhook.job.outcome") == "completed"
		})
		require.Equal(t, stored, traceParent(trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: attempt.Parent().TraceID(), SpanID: attempt.Parent().SpanID(), TraceFlags: trace.FlagsSampled})))

		// The child: created inside the attempt, in its trace.
		var child models.Job
		testenv.WaitFor(t, waitLimit, "the child to complete", func() bool {
			child = models.Job{}
			if err := b.DB.Gorm.Where("parent_id = ?", id).Take(&child).Error; err != nil {
				return false
			}
			return child.Status == models.StatusCompleted
		})
		childCreate := s.span(t, "the child's create", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.Name() == "jobs.create" && traceParent(sp.SpanContext()) == child.TraceParent
		})
		require.Equal(t, attempt.SpanContext().SpanID(), childCreate.Parent().SpanID())
		childAttempt := s.span(t, "the child's attempt", func(sp sdktrace.ReadOnlySpan) bool {
			return sp.Name() == "jobs.attempt web_scraping"
		})
		require.Equal(t, childCreate.SpanContext().SpanID(), childAttempt.Parent().SpanID())
		require.Equal(t, tid, childAttempt.SpanContext().TraceID().String())
	})
}

// TestTraceBatchCreate: every job of a batch stores the batch's span.
func TestTraceBatchCreate(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, true)
		req, err := http.NewRequest(http.MethodPost, s.server.URL+"/api/jobs/batch", strings.NewReader(fmt.Sprintf(
			`{"jobs":[{"type":"web_scraping","payload":{"url":%q}},{"type":"web_scraping","payload":{"url":%q}}]}`,
			s.provider.srv.URL+"/a", s.provider.srv.URL+"/b")))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var out struct {
			Jobs []struct {
				Job struct {
					JobID int64 `json:"jobId"`
				} `json:"job"`
			} `json:"jobs"`
		}
		require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
		res.Body.Close()
		require.Len(t, out.Jobs, 2)
		batch := s.span(t, "jobs.create_batch", func(sp sdktrace.ReadOnlySpan) bool { return sp.Name() == "jobs.create_batch" })
		require.EqualValues(t, 2, attr(batch, "jobhook.batch.size"))
		for _, j := range out.Jobs {
			s.waitCompleted(t, j.Job.JobID)
			require.Equal(t, traceParent(batch.SpanContext()), s.apiJob(t, j.Job.JobID).TraceParent)
		}
	})
}

// TestTracingOff: without a tracer provider nothing is traced, even with
// an incoming traceparent and a global provider set: no spans, no stored
// traceparent, no forwarded or sent traceparent, no ids in the logs.
func TestTracingOff(t *testing.T) {
	global := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(global)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := newSystem(t, b, false)
		id := s.post(t, fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, s.provider.srv.URL+"/page"),
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		s.waitCompleted(t, id)
		require.Empty(t, s.apiJob(t, id).TraceParent)
		require.Empty(t, s.deliveryWith(t, `"trigger"`))
		for _, d := range s.dev.Deliveries() {
			require.Empty(t, d.Header.Get("Traceparent"), "delivery %s", d.MessageID)
		}
		require.Equal(t, []string{""}, s.provider.received())
		for _, l := range s.logs.lines(t, "job completed") {
			require.NotContains(t, l, "trace_id")
		}
		require.Empty(t, global.Ended())
		require.Empty(t, global.Started())
	})
}
