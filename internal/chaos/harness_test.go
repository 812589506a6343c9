package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/secretbox"
)

const (
	envDB    = "TEST_DATABASE_URL"
	envRedis = "TEST_REDIS_URL"

	// leaseDuration is the serve processes' LEASE_DURATION: short, so a
	// dead worker's jobs come back within seconds.
	leaseDuration = 2 * time.Second
	// shutdownGrace is the serve processes' SHUTDOWN_GRACE.
	shutdownGrace = 5 * time.Second
	// concurrency is the serve processes' WORKER_CONCURRENCY.
	concurrency = 8
	// userID owns every job of the suite.
	userID = "chaos"
)

var (
	// binary is the jobhook binary built by TestMain.
	binary   string
	buildErr error
	buildOut []byte

	summariesMu sync.Mutex
	summaries   []string
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if os.Getenv(envDB) != "" && os.Getenv(envRedis) != "" {
		dir, err := os.MkdirTemp("", "jobhook-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "jobhook")
		buildOut, buildErr = build(binary)
	}
	code := m.Run()
	if embeddedDir != "" {
		_ = os.RemoveAll(embeddedDir) // the binary hung_test.go built
	}
	summariesMu.Lock()
	defer summariesMu.Unlock()
	if len(summaries) > 0 {
		fmt.Println("chaos summary:")
		for _, s := range summaries {
			fmt.Println("  " + s)
		}
	}
	return code
}

// build compiles ./cmd/jobhook of this module into out, with -tags chaos:
// only that build contains the job type chaos_record.
func build(out string) ([]byte, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", "build", "-tags", "chaos", "-o", out, "./cmd/jobhook")
	cmd.Dir = root
	return cmd.CombinedOutput()
}

// summary prints one scenario's figures now and again at the end of the run.
func summary(t *testing.T, format string, args ...any) {
	t.Helper()
	line := t.Name() + ": " + fmt.Sprintf(format, args...)
	t.Log(line)
	summariesMu.Lock()
	summaries = append(summaries, line)
	summariesMu.Unlock()
}

// scenario is one chaos scenario's world: a Postgres schema and a Redis key
// prefix of its own, secrets, and the serve processes it started.
type scenario struct {
	t      *testing.T
	schema string
	prefix string
	// appName is the application_name of the serve processes' Postgres
	// connections, so that the suite can kill those and no others.
	appName string
	// serveDB is the serve processes' DATABASE_URL.
	serveDB string
	// admin is TEST_DATABASE_URL; db is the scenario's schema. Both connect
	// as application_name=chaos-admin.
	admin *gorm.DB
	db    *gorm.DB
	rdb   *redis.Client

	jwtSecret    string
	workerSecret string
	// encryptionKey is the serve processes' JOBS_ENCRYPTION_KEY: they run
	// in folders of their own, so without it each would generate its own
	// development key.
	encryptionKey string
	token         string
	client        *http.Client

	procs []*proc
}

// requireServers skips without TEST_DATABASE_URL and TEST_REDIS_URL, and
// fails when only one is set or the binary did not build.
func requireServers(t *testing.T) {
	t.Helper()
	db, rd := os.Getenv(envDB), os.Getenv(envRedis)
	switch {
	case db == "" && rd == "":
		t.Skip("chaos: TEST_DATABASE_URL and TEST_REDIS_URL are not set. The chaos suite kills real `jobhook serve` " +
			"processes, so it needs a real Postgres and Redis that outlive them (the embedded backends die with the process); " +
			"set both to run it, as .ci/run does")
	case db == "" || rd == "":
		t.Fatal("chaos: set both TEST_DATABASE_URL and TEST_REDIS_URL, or neither")
	}
	if buildErr != nil {
		t.Fatalf("chaos: go build -tags chaos ./cmd/jobhook: %v\n%s", buildErr, buildOut)
	}
}

func newScenario(t *testing.T) *scenario {
	t.Helper()
	requireServers(t)
	ctx := context.Background()
	s := &scenario{t: t, schema: "chaos_" + randomHex(6)}
	s.prefix = "chaos:" + s.schema + ":jobs:"
	s.appName = "jobhook-chaos-" + s.schema
	base := os.Getenv(envDB)

	admin, err := database.Open(ctx, database.Options{URL: withParams(t, base, "application_name", "chaos-admin"), MaxOpenConns: 2})
	if err != nil {
		t.Fatalf("chaos: TEST_DATABASE_URL: %v", err)
	}
	s.admin = admin.Gorm
	t.Cleanup(func() { _ = admin.Close() })
	if err := s.admin.Exec("CREATE SCHEMA " + s.schema).Error; err != nil {
		t.Fatalf("chaos: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.admin.WithContext(ctx).Exec("DROP SCHEMA " + s.schema + " CASCADE").Error; err != nil {
			t.Errorf("chaos: drop schema %s: %v", s.schema, err)
		}
	})

	s.serveDB = withParams(t, base, "search_path", s.schema, "application_name", s.appName)
	db, err := database.Open(ctx, database.Options{URL: withParams(t, base, "search_path", s.schema, "application_name", "chaos-admin"), MaxOpenConns: 4})
	if err != nil {
		t.Fatalf("chaos: open schema %s: %v", s.schema, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	// Migrate here, so that jobs can be inserted before serve first starts
	// (serve's own migration then has nothing to do).
	if _, err := db.Migrate(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("chaos: migrate schema %s: %v", s.schema, err)
	}
	s.db = db.Gorm
	if err := chaostask.EnsureTable(ctx, s.db); err != nil {
		t.Fatalf("chaos: %v", err)
	}

	opts, err := redis.ParseURL(os.Getenv(envRedis))
	if err != nil {
		t.Fatalf("chaos: TEST_REDIS_URL: %v", err)
	}
	s.rdb = redis.NewClient(opts)
	t.Cleanup(func() { _ = s.rdb.Close() })
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.rdb.Ping(pctx).Err(); err != nil {
		t.Fatalf("chaos: TEST_REDIS_URL: %v", err)
	}
	t.Cleanup(func() {
		if _, err := s.deleteRedisKeys(); err != nil {
			t.Errorf("chaos: delete redis keys %s*: %v", s.prefix, err)
		}
	})

	s.jwtSecret = randomHex(32)
	s.workerSecret = randomHex(20) // 40 characters
	if s.encryptionKey, err = secretbox.GenerateKey(); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	s.token, err = auth.MintHS256([]byte(s.jwtSecret), userID, time.Hour, time.Now())
	if err != nil {
		t.Fatalf("chaos: mint token: %v", err)
	}
	s.client = &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// withParams sets query parameters on a Postgres URL. The pgx driver sends
// parameters it does not know (search_path) as run-time parameters, and
// application_name as what it is.
func withParams(t *testing.T, raw string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("chaos: TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// serveEnv is the environment of one serve process: the test's own minus
// every jobhook setting, plus the scenario's, then extra (later wins).
func (s *scenario) serveEnv(port string, extra ...string) []string {
	env := cleanEnv()
	env = append(env,
		"DATABASE_URL="+s.serveDB,
		"REDIS_URL="+os.Getenv(envRedis),
		"REDIS_PREFIX="+s.prefix,
		"PORT="+port,
		"EMBEDDED_QSTASH=false",
		"INPROCESS_WORKER=true",
		"INPROCESS_INTERVAL=100ms",
		"LEASE_DURATION="+leaseDuration.String(),
		"SHUTDOWN_GRACE="+shutdownGrace.String(),
		fmt.Sprintf("WORKER_CONCURRENCY=%d", concurrency),
		"JOB_TIMEOUT=15s", // chaos_record sleeps 10 s at most
		"JOBHOOK_CHAOS_TASKS=true",
		// The scenarios create thousands of jobs as one user: the
		// per-user rate limit is not what they test.
		"CREATE_RATE_PER_MINUTE=10000000",
		"CREATE_BURST=1000000",
		"LOG_LEVEL=warn",
		"AUTH_JWT_SECRET="+s.jwtSecret,
		"WORKER_SECRET="+s.workerSecret,
		"JOBS_ENCRYPTION_KEY="+s.encryptionKey,
	)
	return append(env, extra...)
}

// cleanEnv is the test's environment without jobhook's settings.
func cleanEnv() []string {
	drop := map[string]bool{
		"JOBHOOK_CHAOS_TASKS": true, "LEASE_DURATION": true, "SHUTDOWN_GRACE": true,
		"INPROCESS_WORKER": true, "INPROCESS_INTERVAL": true,
	}
	t := reflect.TypeOf(config.Config{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ","); name != "" {
			drop[name] = true
		}
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && !strings.HasPrefix(name, "QSTASH_") {
			out = append(out, kv)
		}
	}
	return out
}

// proc is one `jobhook serve` process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	url     string
	logs    *lockedBuffer
	started time.Time
	done    chan struct{}
	// Set when done is closed.
	exited time.Time
	state  *os.ProcessState
}

// pid is the process id, as chaos_record records it.
func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill9 sends SIGKILL and waits until the process is gone; it returns the
// time it was seen gone.
func (p *proc) kill9(t *testing.T) time.Time {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("chaos: kill -9 %s: %v", p.name, err)
	}
	<-p.done
	return p.exited
}

// sigterm sends SIGTERM and returns when it was sent.
func (p *proc) sigterm(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("chaos: SIGTERM %s: %v", p.name, err)
	}
	return at
}

// waitExit waits up to d for the process to end.
func (p *proc) waitExit(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// start runs `jobhook serve` with the scenario's environment plus extra,
// and returns once it answers /healthz. It is killed when the test ends.
func (s *scenario) start(name string, extra ...string) *proc {
	t := s.t
	t.Helper()
	port := freePort(t)
	p := &proc{name: name, url: "http://127.0.0.1:" + port, logs: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, "serve")
	p.cmd.Dir = t.TempDir() // no .env, no schedules file
	p.cmd.Env = s.serveEnv(port, extra...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("chaos: start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exited = time.Now()
		p.state = p.cmd.ProcessState
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		logs := p.logs.String()
		for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
			if strings.Contains(logs, bad) {
				t.Errorf("chaos: %s (pid %d) logged %q", p.name, p.pid(), bad)
			}
		}
		if t.Failed() {
			t.Logf("%s (pid %d, %s) log:\n%s", p.name, p.pid(), p.state, tail(logs, 48<<10))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !p.running() {
			t.Fatalf("chaos: %s exited before serving (%s):\n%s", name, p.state, p.logs.String())
		}
		res, err := s.client.Get(p.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				s.checkChaosType(p)
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chaos: %s did not answer /healthz within 30s:\n%s", name, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkChaosType fails the test at once when the server does not know the
// chaos_record job type: a create with a bad payload must be refused for
// the payload (invalid_payload), not for the type. It creates nothing.
func (s *scenario) checkChaosType(p *proc) {
	s.t.Helper()
	a, err := s.createJob(p, -1, 1)
	if err != nil {
		s.t.Fatalf("chaos: %s: %v", p.name, err)
	}
	if a.Status != http.StatusBadRequest || a.Code != "invalid_payload" {
		s.t.Fatalf("chaos: %s does not run %s jobs (is it built with -tags chaos and run with JOBHOOK_CHAOS_TASKS=true?): a create with sleepMs -1 answered %d %s",
			p.name, chaostask.Type, a.Status, a.Body)
	}
}

// stopAll ends every process still running: SIGTERM, then SIGKILL after
// the grace period and a margin.
func (s *scenario) stopAll() {
	for _, p := range s.procs {
		if p.running() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, p := range s.procs {
		if !p.waitExit(shutdownGrace + 5*time.Second) {
			s.t.Errorf("chaos: %s did not stop within %s of SIGTERM; killed", p.name, shutdownGrace+5*time.Second)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// exitTimes maps each process's pid to when it ended; every process must
// have ended.
func (s *scenario) exitTimes() map[int]time.Time {
	out := map[int]time.Time{}
	for _, p := range s.procs {
		if p.running() {
			s.t.Fatalf("chaos: %s still running", p.name)
		}
		out[p.pid()] = p.exited
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos: free port: %v", err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// ---- jobs ----

// insertJobs inserts n pending chaos_record jobs, due now, in one
// statement, straight into the database: serve's reconciler must find them
// (Redis has never heard of them). Job i sleeps minMs + i%(spanMs+1).
func (s *scenario) insertJobs(n, minMs, spanMs, maxAttempts int) {
	s.t.Helper()
	err := s.db.Exec(`INSERT INTO jobs (user_id, type, status, priority, payload, attempts, max_attempts, next_run_at, created_at, updated_at)
SELECT ?, ?, 'pending', 0, jsonb_build_object('sleepMs', ?::int + g % (?::int + 1)), 0, ?, now(), now(), now()
FROM generate_series(1, ?::int) AS g`, userID, chaostask.Type, minMs, spanMs, maxAttempts, n).Error
	if err != nil {
		s.t.Fatalf("chaos: insert %d jobs: %v", n, err)
	}
}

// apiAnswer is one POST /api/jobs answer.
type apiAnswer struct {
	Status int
	JobID  int64
	Code   string // the error code of an error answer
	Body   string
}

// createJob creates a chaos_record job through the API of p.
func (s *scenario) createJob(p *proc, sleepMs, maxAttempts int) (apiAnswer, error) {
	return s.postJob(p, fmt.Sprintf(`{"type":%q,"payload":{"sleepMs":%d},"maxAttempts":%d}`, chaostask.Type, sleepMs, maxAttempts))
}

// postJob sends body to POST /api/jobs of p.
func (s *scenario) postJob(p *proc, body string) (apiAnswer, error) {
	req, err := http.NewRequest(http.MethodPost, p.url+"/api/jobs", strings.NewReader(body))
	if err != nil {
		return apiAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return apiAnswer{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return apiAnswer{}, err
	}
	a := apiAnswer{Status: res.StatusCode, Body: string(raw)}
	var doc struct {
		JobID int64 `json:"jobId"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return a, fmt.Errorf("answer %d is not JSON: %q", res.StatusCode, raw)
	}
	a.JobID, a.Code = doc.JobID, doc.Error.Code
	return a, nil
}

// mustCreate creates a job and fails the test unless the answer is 201.
func (s *scenario) mustCreate(p *proc, sleepMs, maxAttempts int) int64 {
	s.t.Helper()
	a, err := s.createJob(p, sleepMs, maxAttempts)
	if err != nil || a.Status != http.StatusCreated {
		s.t.Fatalf("chaos: create a job: %v %d %s", err, a.Status, a.Body)
	}
	return a.JobID
}

// jobRow is what the suite reads of a job.
type jobRow struct {
	ID       int64  `gorm:"column:id"`
	Status   string `gorm:"column:status"`
	Attempts int    `gorm:"column:attempts"`
	Error    string `gorm:"column:error"`
}

// strandedLeases returns the lease ids of the jobs in processing: after a
// kill, the claims the dead process held.
func (s *scenario) strandedLeases() []string {
	s.t.Helper()
	var leases []string
	if err := s.db.Raw("SELECT lease_id FROM jobs WHERE status = 'processing' AND lease_id IS NOT NULL").Scan(&leases).Error; err != nil {
		s.t.Fatalf("chaos: %v", err)
	}
	return leases
}

// stillHeld counts the rows still processing under one of leases.
func (s *scenario) stillHeld(leases []string) (int64, error) {
	if len(leases) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int64
	err := s.db.WithContext(ctx).Raw("SELECT count(*) FROM jobs WHERE status = 'processing' AND lease_id IN ?", leases).Scan(&n).Error
	return n, err
}

func (s *scenario) jobs() []jobRow {
	s.t.Helper()
	var rows []jobRow
	if err := s.db.Raw("SELECT id, status, attempts, error FROM jobs ORDER BY id").Scan(&rows).Error; err != nil {
		s.t.Fatalf("chaos: read jobs: %v", err)
	}
	return rows
}

func (s *scenario) calls() []chaostask.Call {
	s.t.Helper()
	calls, err := chaostask.Calls(context.Background(), s.db)
	if err != nil {
		s.t.Fatalf("chaos: %v", err)
	}
	return calls
}

// progress is a snapshot of the jobs table and the calls in flight.
type progress struct {
	byStatus map[string]int64
	total    int64
	// open counts calls that started and have not finished.
	open int64
}

func (p progress) String() string {
	keys := make([]string, 0, len(p.byStatus))
	for k := range p.byStatus {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, p.byStatus[k]))
	}
	parts = append(parts, fmt.Sprintf("calls in flight=%d", p.open))
	return strings.Join(parts, " ")
}

func (s *scenario) progress() (progress, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rows []struct {
		Status string
		N      int64
	}
	if err := s.db.WithContext(ctx).Raw("SELECT status, count(*) AS n FROM jobs GROUP BY status").Scan(&rows).Error; err != nil {
		return progress{}, err
	}
	p := progress{byStatus: map[string]int64{}}
	for _, r := range rows {
		p.byStatus[r.Status] = r.N
		p.total += r.N
	}
	if err := s.db.WithContext(ctx).Raw("SELECT count(*) FROM " + chaostask.Table + " WHERE finished_at IS NULL").Scan(&p.open).Error; err != nil {
		return progress{}, err
	}
	return p, nil
}

// waitFor polls the database every 50 ms until cond holds, and fails the
// test with the last snapshot when timeout passes first.
func (s *scenario) waitFor(timeout time.Duration, what string, cond func(progress) bool) progress {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last progress
	var lastErr error
	for {
		p, err := s.progress()
		if err == nil {
			last, lastErr = p, nil
			if cond(p) {
				return p
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("chaos: timed out after %s waiting for %s; last seen: %s (err %v)\n%s", timeout, what, last, lastErr, s.stuckJobs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAllCompleted waits until the table holds n jobs, all completed.
func (s *scenario) waitAllCompleted(n int64, timeout time.Duration) {
	s.t.Helper()
	s.waitFor(timeout, fmt.Sprintf("all %d jobs to complete", n), func(p progress) bool {
		if p.byStatus["failed"] > 0 || p.byStatus["cancelled"] > 0 {
			s.t.Fatalf("chaos: jobs ended without completing: %s\n%s", p, s.stuckJobs())
		}
		return p.total == n && p.byStatus["completed"] == n
	})
}

// stuckJobs describes a few jobs that are not completed, for a failure.
func (s *scenario) stuckJobs() string {
	var rows []struct {
		ID             int64
		Status         string
		Attempts       int
		Error          string
		NextRunAt      *time.Time
		LeaseExpiresAt *time.Time
	}
	err := s.db.Raw("SELECT id, status, attempts, error, next_run_at, lease_expires_at FROM jobs WHERE status <> 'completed' ORDER BY id LIMIT 10").Scan(&rows).Error
	if err != nil {
		return "(could not list unfinished jobs: " + err.Error() + ")"
	}
	var b strings.Builder
	b.WriteString("unfinished jobs (first 10):\n")
	now := time.Now()
	for _, r := range rows {
		fmt.Fprintf(&b, "  id=%d status=%s attempts=%d error=%q", r.ID, r.Status, r.Attempts, r.Error)
		if r.NextRunAt != nil {
			fmt.Fprintf(&b, " next_run_in=%s", r.NextRunAt.Sub(now).Round(time.Millisecond))
		}
		if r.LeaseExpiresAt != nil {
			fmt.Fprintf(&b, " lease_expires_in=%s", r.LeaseExpiresAt.Sub(now).Round(time.Millisecond))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// deleteRedisKeys deletes every key under the scenario's prefix (SCAN and
// DEL), and returns how many it deleted.
func (s *scenario) deleteRedisKeys() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	iter := s.rdb.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := s.rdb.Del(ctx, batch...).Err(); err != nil {
				return n, err
			}
			n += len(batch)
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return n, err
	}
	if len(batch) > 0 {
		if err := s.rdb.Del(ctx, batch...).Err(); err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
}

// terminateServeConnections kills the Postgres connections of the
// scenario's serve processes (and no one else's) and returns how many.
func (s *scenario) terminateServeConnections() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	err := s.admin.WithContext(ctx).Raw(`SELECT count(*) FROM (
    SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ?
) t WHERE ok`, s.appName).Scan(&n).Error
	return n, err
}
