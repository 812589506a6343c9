package chaos

// Hung backends: a database or Redis that accepts connections and never
// answers. Every wait of a drain and of a shutdown is bounded, so POST
// /api/workers answers within its budget + 5 s (503 backend_unavailable
// with the summary) and SIGTERM ends serve within SHUTDOWN_GRACE + 5 s,
// naming the jobs it could not give back.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/secretbox"
)

const (
	// hungBudget is the ?budget= of the drain called against a hung
	// backend, and hungGrace the SHUTDOWN_GRACE of its server.
	hungBudget = 2 * time.Second
	hungGrace  = 3 * time.Second
	// answerMargin is what the bounds promise beyond the budget (a drain's
	// answer) or the grace period (serve's exit).
	answerMargin = 5 * time.Second
	// hungLease is the servers' LEASE_DURATION here: long enough that the
	// jobs running when the backend hangs are still this server's at
	// SIGTERM, so shutdown has jobs it cannot give back.
	hungLease = 30 * time.Second
)

// hangProxy forwards TCP connections to a target until Hang: from then on
// it accepts connections and never answers, and the bytes of the
// connections already open go nowhere, as a backend that hangs.
type hangProxy struct {
	ln     net.Listener
	target string
	hung   atomic.Bool
	done   chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// newHangProxy listens on a loopback port in front of target; it is closed
// when the test ends.
func newHangProxy(t *testing.T, target string) *hangProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaos: proxy: %v", err)
	}
	p := &hangProxy{ln: ln, target: target, done: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's host:port.
func (p *hangProxy) addr() string { return p.ln.Addr().String() }

// hang stops every answer, for good.
func (p *hangProxy) hang() { p.hung.Store(true) }

func (p *hangProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *hangProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) || p.hung.Load() {
			continue // held open, never read, never answered
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil || !p.track(up) {
			_ = c.Close()
			continue
		}
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst until either ends, or until the proxy hangs: then
// what it reads is dropped and nothing more is written.
func (p *hangProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.hung.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !p.hung.Load() {
				_ = dst.Close()
			}
			return
		}
	}
}

func (p *hangProxy) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
}

// TestHangProxy: the proxy forwards, then after hang accepts new
// connections and answers nothing, on them or on the old ones.
func TestHangProxy(t *testing.T) {
	m := miniredis.RunT(t)
	p := newHangProxy(t, m.Addr())
	c, err := net.DialTimeout("tcp", p.addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ping := func(c net.Conn) error {
		if err := c.SetDeadline(time.Now().Add(500 * time.Millisecond)); err != nil {
			return err
		}
		if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n"); err != nil {
			return err
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err == nil && !strings.HasPrefix(string(buf[:n]), "+PONG") {
			err = fmt.Errorf("answer %q", buf[:n])
		}
		return err
	}
	if err := ping(c); err != nil {
		t.Fatalf("before hang: %v", err)
	}
	p.hang()
	if err := ping(c); err == nil {
		t.Fatal("an open connection still answers after hang")
	}
	c2, err := net.DialTimeout("tcp", p.addr(), time.Second)
	if err != nil {
		t.Fatalf("after hang the proxy must still accept: %v", err)
	}
	defer c2.Close()
	if err := ping(c2); err == nil {
		t.Fatal("a new connection answers after hang")
	}
}

// TestHungDatabase: with Postgres behind a proxy that hangs while jobs
// run, POST /api/workers?budget=2s answers 503 backend_unavailable with
// the drain summary within budget + 5 s, and SIGTERM (SHUTDOWN_GRACE=3s)
// ends serve within grace + 5 s, logging the ids of the jobs it could not
// give back.
func TestHungDatabase(t *testing.T) {
	s := newScenario(t)
	u, err := url.Parse(s.serveDB)
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	proxy := newHangProxy(t, u.Host)
	u.Host = proxy.addr()
	p := s.start("serve-hung-db", "DATABASE_URL="+u.String(), "SHUTDOWN_GRACE="+hungGrace.String(),
		"LEASE_DURATION="+hungLease.String())
	ids := s.runningJobs(p, 2)
	proxy.hang()
	s.checkHungBackend(p, ids)
}

// TestHungRedis: the embedded run's version (SQLite cannot hang): the
// server's Redis, a miniredis behind the proxy, hangs while jobs run; the
// same bounds hold.
func TestHungRedis(t *testing.T) {
	s := embeddedScenario(t)
	m := miniredis.RunT(t)
	proxy := newHangProxy(t, m.Addr())
	p := s.start("serve-hung-redis", "DATABASE_URL=", "SQLITE_PATH="+filepath.Join(t.TempDir(), "jobhook.db"),
		"REDIS_URL=redis://"+proxy.addr()+"/0", "REDIS_PREFIX=jobs:", "SHUTDOWN_GRACE="+hungGrace.String(),
		"LEASE_DURATION="+hungLease.String())
	ids := s.runningJobs(p, 2)
	proxy.hang()
	s.checkHungBackend(p, ids)
}

// runningJobs creates n jobs that sleep 10 s and waits until each runs.
func (s *scenario) runningJobs(p *proc, n int) []int64 {
	s.t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = s.mustCreate(p, 10000, 1)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		for s.jobStatus(p, id) != "processing" {
			if time.Now().After(deadline) {
				s.t.Fatalf("chaos: job %d did not start within 30s:\n%s", id, tail(p.logs.String(), 8<<10))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ids
}

// jobStatus reads a job's status through the API ("" when it cannot).
func (s *scenario) jobStatus(p *proc, id int64) string {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/jobs/%d", p.url, id), nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	res, err := s.client.Do(req)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	var job struct {
		Status string `json:"status"`
	}
	if json.NewDecoder(res.Body).Decode(&job) != nil {
		return ""
	}
	return job.Status
}

// checkHungBackend runs the two checks against a server whose backend
// hangs while the jobs ids run: a short drain answers 503 in time, and
// SIGTERM ends the server in time, naming the jobs it could not give back.
func (s *scenario) checkHungBackend(p *proc, ids []int64) {
	t := s.t
	t.Helper()
	client := &http.Client{Timeout: time.Minute}
	req, err := http.NewRequest(http.MethodPost, p.url+"/api/workers?budget="+hungBudget.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.workerSecret)
	began := time.Now()
	res, err := client.Do(req)
	took := time.Since(began)
	if err != nil {
		t.Fatalf("POST /api/workers with a hung backend: no answer after %s: %v", took.Round(time.Millisecond), err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if took > hungBudget+answerMargin {
		t.Errorf("POST /api/workers?budget=%s answered after %s, want within %s", hungBudget, took.Round(time.Millisecond), hungBudget+answerMargin)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("answer %d is not JSON: %q", res.StatusCode, raw)
	}
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body["error"], &e)
	if res.StatusCode != http.StatusServiceUnavailable || e.Code != "backend_unavailable" {
		t.Errorf("POST /api/workers with a hung backend: %d %s, want 503 backend_unavailable", res.StatusCode, raw)
	}
	for _, key := range []string{"claimed", "unrecorded", "leftForTime", "durationMs"} {
		if _, ok := body[key]; !ok {
			t.Errorf("the 503 lacks the summary's %q: %s", key, raw)
		}
	}

	sent := p.sigterm(t)
	limit := hungGrace + answerMargin
	if !p.waitExit(limit + 10*time.Second) {
		t.Fatalf("%s still running %s after SIGTERM (grace %s) with a hung backend:\n%s", p.name, limit+10*time.Second, hungGrace, tail(p.logs.String(), 16<<10))
	}
	exit := p.exited.Sub(sent)
	if exit > limit {
		t.Errorf("%s exited %s after SIGTERM, want within %s (grace %s + 5 s)", p.name, exit.Round(time.Millisecond), limit, hungGrace)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "jobs not given back in time") {
		t.Errorf("%s did not log the jobs it could not give back:\n%s", p.name, tail(logs, 16<<10))
	}
	for _, id := range ids {
		if !strings.Contains(logs, fmt.Sprint(id)) {
			t.Errorf("the log does not name job %d", id)
		}
	}
	summary(t, "drain answered %d after %s (budget %s); exit %s after SIGTERM (grace %s), status %d",
		res.StatusCode, took.Round(time.Millisecond), hungBudget, exit.Round(time.Millisecond), hungGrace, p.state.ExitCode())
}

var (
	embeddedBuild sync.Once
	embeddedErr   error
	// embeddedDir holds the binary embeddedScenario built; TestMain
	// removes it.
	embeddedDir string
)

// embeddedScenario is a scenario without the real servers: its serve
// processes get their backends from extra settings. It builds the binary
// when TestMain did not.
func embeddedScenario(t *testing.T) *scenario {
	t.Helper()
	embeddedBuild.Do(func() {
		if binary != "" {
			return
		}
		dir, err := os.MkdirTemp("", "jobhook-chaos-")
		if err != nil {
			embeddedErr = err
			return
		}
		embeddedDir, binary = dir, filepath.Join(dir, "jobhook")
		if out, err := build(binary); err != nil {
			embeddedErr = fmt.Errorf("go build -tags chaos ./cmd/jobhook: %w\n%s", err, out)
		}
	})
	if embeddedErr != nil {
		t.Fatalf("chaos: %v", embeddedErr)
	}
	s := &scenario{t: t, jwtSecret: randomHex(32), workerSecret: randomHex(20), client: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if s.encryptionKey, err = secretbox.GenerateKey(); err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if s.token, err = auth.MintHS256([]byte(s.jwtSecret), userID, time.Hour, time.Now()); err != nil {
		t.Fatalf("chaos: mint token: %v", err)
	}
	t.Cleanup(s.client.CloseIdleConnections)
	return s
}
