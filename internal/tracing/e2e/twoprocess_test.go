package e2e_test

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/testenv"
)

var (
	// binary is the jobhook binary TestMain built (real backends only).
	binary   string
	buildErr error
	buildOut []byte
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if os.Getenv("TEST_DATABASE_URL") != "" && os.Getenv("TEST_REDIS_URL") != "" {
		dir, err := os.MkdirTemp("", "jobhook-trace-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "trace e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "jobhook")
		buildOut, buildErr = build(binary)
	}
	return m.Run()
}

// build compiles ./cmd/jobhook of this module into out.
func build(out string) ([]byte, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	cmd := exec.Command("go", "build", "-o", out, "./cmd/jobhook")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	return cmd.CombinedOutput()
}

// collector is an OTLP/HTTP trace receiver: it decodes each
// ExportTraceServiceRequest and keeps its spans with their resource.
type collector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []collected
}

// collected is one span received, with its resource's attributes.
type collected struct {
	span     *tracepb.Span
	resource map[string]string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "want POST /v1/traces with application/x-protobuf", http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			res := attrs(rs.GetResource().GetAttributes())
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					c.spans = append(c.spans, collected{span: sp, resource: res})
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// attrs flattens OTLP attributes to strings.
func attrs(kvs []*commonpb.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			out[kv.GetKey()] = v.GetStringValue()
		default:
			out[kv.GetKey()] = strconv.FormatInt(v.GetIntValue(), 10)
		}
	}
	return out
}

// inTrace returns the spans of trace tid (hex).
func (c *collector) inTrace(tid string) []collected {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []collected
	for _, s := range c.spans {
		if hex.EncodeToString(s.span.GetTraceId()) == tid {
			out = append(out, s)
		}
	}
	return out
}

// serveProc is one `jobhook serve` process.
type serveProc struct {
	name string
	cmd  *exec.Cmd
	url  string
	logs *lockedBuffer
	done chan struct{}
}

func (p *serveProc) pid() string { return strconv.Itoa(p.cmd.Process.Pid) }

// stop sends SIGTERM and waits for the process to exit (it flushes its
// last spans on the way).
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		t.Fatalf("%s did not stop within 15s of SIGTERM", p.name)
	}
	require.True(t, p.cmd.ProcessState.Success(), "%s exited with %s", p.name, p.cmd.ProcessState)
}

// cleanEnv is the test's environment without jobhook's, QStash's and
// OpenTelemetry's settings.
func cleanEnv() []string {
	drop := map[string]bool{"INPROCESS_WORKER": true, "INPROCESS_INTERVAL": true}
	ct := reflect.TypeOf(config.Config{})
	for i := 0; i < ct.NumField(); i++ {
		if name, _, _ := strings.Cut(ct.Field(i).Tag.Get("env"), ","); name != "" {
			drop[name] = true
		}
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && !strings.HasPrefix(name, "QSTASH_") && !strings.HasPrefix(name, "OTEL_") {
			out = append(out, kv)
		}
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// startServe runs `jobhook serve` on port with env and waits for /healthz.
func startServe(t *testing.T, name, port string, env []string) *serveProc {
	t.Helper()
	p := &serveProc{name: name, url: "http://127.0.0.1:" + port, logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve")
	p.cmd.Dir = t.TempDir() // no .env, no schedules file
	p.cmd.Env = append(env, "PORT="+port, "OTEL_RESOURCE_ATTRIBUTES=service.instance.id="+name)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.logs.mu.Lock()
			t.Logf("%s log:\n%s", name, p.logs.buf.String())
			p.logs.mu.Unlock()
		}
	})
	testenv.WaitFor(t, 30*time.Second, name+" to answer /healthz", func() bool {
		select {
		case <-p.done:
			t.Fatalf("%s exited before serving", name)
		default:
		}
		res, err := http.Get(p.url + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return p
}

// freshBackends makes a Postgres schema and a Redis prefix of the test's
// own, and returns the database URL on that schema.
func freshBackends(t *testing.T) (dbURL, prefix string) {
	t.Helper()
	ctx := context.Background()
	schema := "trace_" + randomHex(6)
	prefix = "trace:" + schema + ":jobs:"
	base := os.Getenv("TEST_DATABASE_URL")
	admin, err := database.Open(ctx, database.Options{URL: base, MaxOpenConns: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	require.NoError(t, admin.Gorm.Exec("CREATE SCHEMA "+schema).Error)
	t.Cleanup(func() {
		if err := admin.Gorm.Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	dbURL = u.String()
	// Migrate before the two servers start, so they do not race to.
	db, err := database.Open(ctx, database.Options{URL: dbURL, MaxOpenConns: 2})
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Migrate(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)

	opts, err := redis.ParseURL(os.Getenv("TEST_REDIS_URL"))
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() {
		defer rdb.Close()
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	return dbURL, prefix
}

// TestTraceAcrossTwoServers is the whole path across processes: server A
// takes POST /api/jobs (with a traceparent), the in-test QStash delivers
// the trigger to server B, B drains and runs the job, whose handler
// fetches a page. Both export to an in-test OTLP/HTTP collector; the
// trace holds A's request and create spans and its publish, B's delivery
// request, drain, attempt (the child of A's create span) and page fetch,
// with their parents, each with its process's resource, and the page
// received the fetch span's traceparent.
func TestTraceAcrossTwoServers(t *testing.T) {
	db, rd := os.Getenv("TEST_DATABASE_URL"), os.Getenv("TEST_REDIS_URL")
	switch {
	case db == "" && rd == "":
		t.Skip("TEST_DATABASE_URL and TEST_REDIS_URL are not set: this test runs two `jobhook serve` processes, " +
			"which need a Postgres and a Redis they share (the embedded backends are each process's own); set both to run it")
	case db == "" || rd == "":
		t.Fatal("set both TEST_DATABASE_URL and TEST_REDIS_URL, or neither")
	}
	if buildErr != nil {
		t.Fatalf("go build ./cmd/jobhook: %v\n%s", buildErr, buildOut)
	}
	dbURL, prefix := freshBackends(t)
	col := newCollector(t)
	page := newProvider(t)

	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	dev, err := qstashdev.New(qstashdev.Config{
		Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPClient: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, dev.Start(ctx))
	t.Cleanup(func() { _ = dev.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = dev.Serve(ctx, ln) }()

	portA, portB := freePort(t), freePort(t)
	jwt := randomHex(32)
	env := append(cleanEnv(),
		"DATABASE_URL="+dbURL, "REDIS_URL="+rd, "REDIS_PREFIX="+prefix, "MIGRATE_ON_START=false",
		"QSTASH_URL=http://"+ln.Addr().String(), "QSTASH_TOKEN="+keys.Token,
		"QSTASH_CURRENT_SIGNING_KEY="+keys.CurrentSigningKey, "QSTASH_NEXT_SIGNING_KEY="+keys.NextSigningKey,
		// Both servers publish to B's worker endpoint.
		"QSTASH_WORKER_URL=http://127.0.0.1:"+portB+"/api/workers",
		"INPROCESS_WORKER=false", "SCRAPE_ALLOW_PRIVATE=true",
		"AUTH_JWT_SECRET="+jwt, "WORKER_SECRET="+randomHex(20),
		"LOG_FORMAT=json", "SHUTDOWN_GRACE=2s",
		"OTEL_EXPORTER_OTLP_ENDPOINT="+col.srv.URL, "OTEL_BSP_SCHEDULE_DELAY=100",
	)
	b := startServe(t, "B", portB, env)
	a := startServe(t, "A", portA, env)
	// Each server's start-up trigger reaches B and drains nothing: then
	// the only drain of the job is the one its create triggers.
	testenv.WaitFor(t, waitLimit, "the start-up triggers to be delivered", func() bool {
		st := dev.Stats()
		return st.Delivered >= 2 && st.Pending == 0
	})

	token, err := auth.MintHS256([]byte(jwt), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	tid, sid := randomHex(16), randomHex(8)
	req, err := http.NewRequest(http.MethodPost, a.url+"/api/jobs", strings.NewReader(
		fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, page.srv.URL+"/page")))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+tid+"-"+sid+"-01")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var created struct {
		JobID int64 `json:"jobId"`
	}
	require.Equal(t, http.StatusCreated, res.StatusCode)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&created))
	res.Body.Close()

	var job struct {
		Status      string `json:"status"`
		TraceParent string `json:"traceParent"`
	}
	testenv.WaitFor(t, waitLimit, "the job to complete", func() bool {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/jobs/%d", a.url, created.JobID), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer res.Body.Close()
		return json.NewDecoder(res.Body).Decode(&job) == nil && job.Status == "completed"
	})
	// A graceful stop exports the spans still buffered.
	b.stop(t)
	a.stop(t)

	spans := col.inTrace(tid)
	find := func(what string, match func(collected) bool) collected {
		t.Helper()
		for _, s := range spans {
			if match(s) {
				return s
			}
		}
		var names []string
		for _, s := range spans {
			names = append(names, s.span.GetName()+"@"+s.resource["service.instance.id"])
		}
		t.Fatalf("no span %s in trace %s; it has %v", what, tid, names)
		return collected{}
	}
	named := func(proc *serveProc, name string) func(collected) bool {
		return func(s collected) bool {
			return s.span.GetName() == name && s.resource["process.pid"] == proc.pid()
		}
	}
	id := func(b []byte) string { return hex.EncodeToString(b) }
	childOf := func(child, parent collected) {
		t.Helper()
		require.Equal(t, id(parent.span.GetSpanId()), id(child.span.GetParentSpanId()),
			"%s is the child of %s", child.span.GetName(), parent.span.GetName())
	}

	request := find("POST /api/jobs on A", named(a, "POST /api/jobs"))
	require.Equal(t, sid, id(request.span.GetParentSpanId()))
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, request.span.GetKind())
	require.Equal(t, "201", attrs(request.span.GetAttributes())["http.response.status_code"])
	create := find("jobs.create on A", named(a, "jobs.create"))
	childOf(create, request)
	require.Equal(t, "00-"+tid+"-"+id(create.span.GetSpanId())+"-01", job.TraceParent, "the job stores its create span")
	publish := find("the trigger's publish on A", func(s collected) bool {
		return s.span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && s.resource["process.pid"] == a.pid()
	})
	childOf(publish, create)

	delivery := find("POST /api/workers on B", named(b, "POST /api/workers"))
	childOf(delivery, publish)
	drain := find("jobs.drain on B", named(b, "jobs.drain"))
	childOf(drain, delivery)
	attempt := find("the attempt on B", named(b, "jobs.attempt web_scraping"))
	childOf(attempt, create)
	require.Len(t, attempt.span.GetLinks(), 1)
	require.Equal(t, id(drain.span.GetSpanId()), id(attempt.span.GetLinks()[0].GetSpanId()), "the attempt links to its drain")
	aa := attrs(attempt.span.GetAttributes())
	require.Equal(t, "completed", aa["jobhook.job.outcome"])
	require.Equal(t, strconv.FormatInt(created.JobID, 10), aa["jobhook.job.id"])
	// Two fetches, robots.txt and the page, each a client span of the
	// attempt whose traceparent the site received.
	var calls []string
	var call collected
	for _, s := range spans {
		if s.span.GetKind() == tracepb.Span_SPAN_KIND_CLIENT && id(s.span.GetParentSpanId()) == id(attempt.span.GetSpanId()) {
			calls = append(calls, "00-"+tid+"-"+id(s.span.GetSpanId())+"-01")
			call = s
		}
	}
	require.Len(t, calls, 2, "robots.txt and the page")
	require.ElementsMatch(t, calls, page.received())

	for _, s := range []collected{request, create, publish, delivery, drain, attempt, call} {
		require.Equal(t, "jobhook", s.resource["service.name"], s.span.GetName())
		require.NotEmpty(t, s.resource["process.pid"])
	}
	require.Equal(t, "A", request.resource["service.instance.id"])
	require.Equal(t, "B", attempt.resource["service.instance.id"])

	// B's log line of the attempt carries its ids.
	b.logs.mu.Lock()
	logs := b.logs.buf.String()
	b.logs.mu.Unlock()
	var line map[string]any
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"job completed"`) {
			require.NoError(t, json.Unmarshal([]byte(l), &line))
		}
	}
	require.NotNil(t, line, "B logged the job's completion")
	require.Equal(t, tid, line["trace_id"])
	require.Equal(t, id(attempt.span.GetSpanId()), line["span_id"])
}
