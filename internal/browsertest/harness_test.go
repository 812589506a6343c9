package browsertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/secretbox"
)

const (
	envDB      = "TEST_DATABASE_URL"
	envRedis   = "TEST_REDIS_URL"
	envBrowser = "JOBHOOK_CHROMIUM"
	envRequire = "JOBHOOK_REQUIRE_BROWSER"
	envArtDir  = "JOBHOOK_ARTIFACTS_DIR"
	// defaultChromium is Debian's chromium package.
	defaultChromium = "/usr/bin/chromium"
)

var (
	// binary is the jobhook binary TestMain built; buildErr why not.
	binary   string
	buildErr error
	buildOut []byte
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if _, err := chromium(); err == nil {
		dir, err := os.MkdirTemp("", "jobhook-browser-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "browsertest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "jobhook")
		buildOut, buildErr = build(binary)
	}
	return m.Run()
}

// chromium returns the browser's path, or why there is none.
func chromium() (string, error) {
	path := os.Getenv(envBrowser)
	if path == "" {
		path = defaultChromium
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no Chromium at %s (set %s, or apt-get install chromium): %w", path, envBrowser, err)
	}
	return path, nil
}

// requireBrowser returns the browser's path; it skips the test when there
// is none, or fails it when JOBHOOK_REQUIRE_BROWSER=1.
func requireBrowser(t *testing.T) string {
	t.Helper()
	path, err := chromium()
	if err != nil {
		if os.Getenv(envRequire) == "1" {
			t.Fatalf("browsertest: %v (%s=1 requires the browser)", err, envRequire)
		}
		t.Skipf("browsertest: %v; the browser tests need it (%s=1 makes this a failure)", err, envRequire)
	}
	if buildErr != nil {
		t.Fatalf("browsertest: go build ./cmd/jobhook: %v\n%s", buildErr, buildOut)
	}
	return path
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

// server is one `jobhook serve` process and what the test needs to call it.
type server struct {
	t          *testing.T
	url        string
	adminToken string
	jwtSecret  string
	// backend names the backends in screenshot names.
	backend string
	client  *http.Client
	cmd     *exec.Cmd
	logs    *lockedBuffer
	done    chan struct{}
}

// startServe starts `jobhook serve` in a temporary folder, on the real
// Postgres and Redis (a fresh schema and key prefix) when configured,
// else on its embedded defaults, with extra settings last. It returns
// once /healthz answers; the process stops when the test ends.
func startServe(t *testing.T, extra ...string) *server {
	t.Helper()
	s := &server{t: t, adminToken: randomHex(24), jwtSecret: randomHex(32), backend: "embedded",
		client: &http.Client{Timeout: 10 * time.Second}, logs: &lockedBuffer{}, done: make(chan struct{})}
	t.Cleanup(s.client.CloseIdleConnections)
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	port := freePort(t)
	s.url = "http://127.0.0.1:" + port
	env := append(cleanEnv(),
		"PORT="+port,
		"PUBLIC_URL="+s.url,
		"ADMIN_TOKEN="+s.adminToken,
		"AUTH_JWT_SECRET="+s.jwtSecret,
		"WORKER_SECRET="+randomHex(20),
		"JOBS_ENCRYPTION_KEY="+key,
		"EMBEDDED_QSTASH=false",
		"INPROCESS_WORKER=true",
		"INPROCESS_INTERVAL=100ms",
		"SCRAPE_ALLOW_PRIVATE=true",
		"LOG_LEVEL=warn",
	)
	db, rd := os.Getenv(envDB), os.Getenv(envRedis)
	switch {
	case db != "" && rd != "":
		s.backend = "postgres"
		env = append(env, realBackends(t, db, rd)...)
	case db != "" || rd != "":
		t.Fatalf("browsertest: set both %s and %s, or neither", envDB, envRedis)
	}
	s.cmd = exec.Command(binary, "serve")
	s.cmd.Dir = t.TempDir()
	s.cmd.Env = append(env, extra...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("browsertest: start serve: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.done:
			t.Fatalf("browsertest: serve exited before answering:\n%s", s.logs.String())
		default:
		}
		if res, err := s.client.Get(s.url + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("browsertest: serve did not answer /healthz within 30s:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, kills after 15 s, and checks the log.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	logs := s.logs.String()
	for _, bad := range []string{"panic:", "DATA RACE", "fatal error:"} {
		if strings.Contains(logs, bad) {
			s.t.Errorf("browsertest: serve logged %q", bad)
		}
	}
	if s.t.Failed() {
		s.t.Logf("serve log:\n%s", tail(logs, 32<<10))
	}
}

// realBackends makes a fresh Postgres schema and Redis key prefix, both
// removed when the test ends, and returns serve's settings for them.
func realBackends(t *testing.T, dbURL, redisURL string) []string {
	t.Helper()
	ctx := context.Background()
	schema := "browser_" + randomHex(6)
	prefix := "browser:" + schema + ":jobs:"
	admin, err := database.Open(ctx, database.Options{URL: dbURL, MaxOpenConns: 2})
	if err != nil {
		t.Fatalf("browsertest: %s: %v", envDB, err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.Gorm.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("browsertest: create schema: %v", err)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("browsertest: %s: %v", envRedis, err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	// Registered before serve starts, so they run after it stopped.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := admin.Gorm.WithContext(ctx).Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("browsertest: drop schema %s: %v", schema, err)
		}
		iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("browsertest: scan redis keys %s*: %v", prefix, err)
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if err := rdb.Del(ctx, keys[:n]...).Err(); err != nil {
				t.Errorf("browsertest: delete redis keys: %v", err)
				break
			}
			keys = keys[n:]
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("browsertest: %s: %v", envDB, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return []string{"DATABASE_URL=" + u.String(), "REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix}
}

// cleanEnv is the test's environment without jobhook's settings.
func cleanEnv() []string {
	drop := map[string]bool{}
	t := reflect.TypeOf(config.Config{})
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ","); name != "" {
			drop[name] = true
		}
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !drop[name] && !strings.HasPrefix(name, "QSTASH_") && !strings.HasPrefix(name, "JOBHOOK_") {
			out = append(out, kv)
		}
	}
	return out
}

// jobView is what the tests read of a job through the API.
type jobView struct {
	ID         int64           `json:"id"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	Error      string          `json:"error"`
	WaitingFor json.RawMessage `json:"waitingFor"`
}

// createJob creates a job as user through the API and returns its id.
func (s *server) createJob(user, typ string, payload any) int64 {
	s.t.Helper()
	token, err := auth.MintHS256([]byte(s.jwtSecret), user, time.Hour, time.Now())
	if err != nil {
		s.t.Fatalf("browsertest: mint token: %v", err)
	}
	body, _ := json.Marshal(map[string]any{"type": typ, "payload": payload, "maxAttempts": 1})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/api/jobs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("browsertest: create job: %v", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		s.t.Fatalf("browsertest: create %s job: %d %s", typ, res.StatusCode, raw)
	}
	var out struct {
		JobID int64 `json:"jobId"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		s.t.Fatalf("browsertest: create job answer %s: %v", raw, err)
	}
	return out.JobID
}

// job reads a job through the API, as the operator.
func (s *server) job(id int64) jobView {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/jobs/%d", s.url, id), nil)
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("browsertest: get job %d: %v", id, err)
	}
	defer res.Body.Close()
	var j jobView
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&j) != nil {
		s.t.Fatalf("browsertest: get job %d: %d", id, res.StatusCode)
	}
	return j
}

// waitJob waits up to 30 s for every job to satisfy ok.
func (s *server) waitJob(what string, ok func(jobView) bool, ids ...int64) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for {
			j := s.job(id)
			if ok(j) {
				break
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("browsertest: job %d not %s within 30s: %+v", id, what, j)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (s *server) waitStatus(status string, ids ...int64) {
	s.t.Helper()
	s.waitJob(status, func(j jobView) bool { return j.Status == status }, ids...)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("browsertest: free port: %v", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// lockedBuffer collects a process's output safely.
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
