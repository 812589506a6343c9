package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// httpSecret signs the load user's token; the server runs in development
// mode on loopback only.
const httpSecret = "bench-only-secret-bench-only-secret-0123"

// httpBench runs the real server: `jobhook serve` built with -tags chaos
// (for the no-op job type chaos_record) as a subprocess, in its default
// wiring (embedded QStash calling POST /api/workers), driven by `jobhook
// load` with 16 clients.
type httpBench struct {
	env *env
	dir string
	bin string
}

// httpResult is one `jobhook load` run.
type httpResult struct {
	createRate float64 // creates per second
	endToEnd   float64 // jobs completed per second since the first create; 0 without drains
}

// newHTTPBench builds the binary into a temporary folder.
func newHTTPBench(ctx context.Context, e *env, o options) (*httpBench, error) {
	dir, err := os.MkdirTemp("", "jobhook-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary folder: %w", err)
	}
	h := &httpBench{env: e, dir: dir, bin: filepath.Join(dir, "jobhook")}
	build := exec.CommandContext(ctx, "go", "build", "-tags", "chaos", "-o", h.bin, "./cmd/jobhook")
	build.Dir = o.repo
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("build jobhook (-repo %s): %w\n%s", o.repo, err, out)
	}
	return h, nil
}

var (
	createdLine  = regexp.MustCompile(`created (\d+) jobs in \S+: (\d+) jobs/s`)
	endToEndLine = regexp.MustCompile(`; (\d+) jobs/s end to end`)
)

// run starts a server, loads it with n chaos_record jobs, and stops it.
// With drains false the server runs no QStash (EMBEDDED_QSTASH=false), so
// no drain competes with the creates for the cores, Postgres and Redis,
// as none does in the library's create phase; load then only creates.
func (h *httpBench) run(ctx context.Context, n int, drains bool) (httpResult, error) {
	port, err := freePort()
	if err != nil {
		return httpResult{}, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(h.dir, "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return httpResult{}, fmt.Errorf("server log: %w", err)
	}
	defer logFile.Close()
	serve := exec.Command(h.bin, "serve")
	serve.Dir = h.dir
	serve.Stdout, serve.Stderr = logFile, logFile
	serve.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + h.dir,
		"APP_ENV=development",
		"PORT=" + strconv.Itoa(port),
		"PUBLIC_URL=" + base,
		"DATABASE_URL=" + h.env.dbURL,
		"REDIS_URL=" + h.env.redisURL,
		"REDIS_PREFIX=" + httpPrefix,
		"SQLITE_PATH=" + filepath.Join(h.dir, "data", "jobhook.db"),
		"IMAGES_DIR=" + filepath.Join(h.dir, "images"),
		"AUTH_JWT_SECRET=" + httpSecret,
		"JOBHOOK_CHAOS_TASKS=true",
		"CREATE_RATE_PER_MINUTE=100000000",
		"CREATE_BURST=10000000",
		"LOG_LEVEL=warn",
	}
	if !drains {
		serve.Env = append(serve.Env, "EMBEDDED_QSTASH=false")
	}
	if err := serve.Start(); err != nil {
		return httpResult{}, fmt.Errorf("start jobhook serve: %w", err)
	}
	defer func() {
		_ = serve.Process.Signal(syscall.SIGTERM)
		exited := make(chan struct{})
		go func() { _ = serve.Wait(); close(exited) }()
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			_ = serve.Process.Kill()
			<-exited
		}
		if _, err := h.env.admin.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+schema+".chaos_calls"); err != nil {
			progress("HTTP cleanup: " + err.Error())
		}
	}()
	err = waitFor(ctx, 100*time.Millisecond, time.Minute, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if err != nil {
			return false, err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return httpResult{}, fmt.Errorf("server not ready (log: %s): %w", logPath, err)
	}

	args := []string{"load", "--url", base, "--jobs", strconv.Itoa(n), "--concurrency", "16",
		"--type", "chaos_record", "--payload", `{"sleepMs":0}`, "--progress-interval", "1h"}
	if !drains {
		args = append(args, "--create-only")
	}
	load := exec.CommandContext(ctx, h.bin, args...)
	load.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + h.dir, "AUTH_JWT_SECRET=" + httpSecret}
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := load.Run(); err != nil {
		return httpResult{}, fmt.Errorf("jobhook load: %w\n%s", err, out.String())
	}
	c := createdLine.FindStringSubmatch(out.String())
	e := endToEndLine.FindStringSubmatch(out.String())
	if c == nil || (drains && e == nil) {
		return httpResult{}, fmt.Errorf("jobhook load printed no rates:\n%s", out.String())
	}
	var r httpResult
	r.createRate, _ = strconv.ParseFloat(c[2], 64)
	if e != nil {
		r.endToEnd, _ = strconv.ParseFloat(e[1], 64)
	}
	return r, nil
}

func (h *httpBench) close() { _ = os.RemoveAll(h.dir) }

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
