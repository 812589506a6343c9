package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/testenv"
)

// TestReadmeWalkthrough runs the README's walk-through block as written
// against a fresh embedded server started as the README says (only the
// port differs, so the test never collides with a server on 8080).
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	for _, tool := range []string{"bash", "curl", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the walk-through needs %s on PATH: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)<!-- walkthrough:begin -->\\s*```sh\\n(.*?)```\\s*<!-- walkthrough:end -->").FindSubmatch(readme)
	require.NotNil(t, m, "README.md has no walk-through block")
	block := string(m[1])
	require.Contains(t, block, "localhost:8080")

	bin := filepath.Join(t.TempDir(), "jobhook")
	build := exec.Command("go", "build", "-o", bin, "./cmd/jobhook")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	port := freePort(t)
	data := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "serve")
	srv.Dir = data // a fresh working folder: fresh data/jobhook.db, no .env
	srv.Env = append(cleanEnv(), "PORT="+port, "SCRAPE_ALLOW_PRIVATE=true")
	logs := &lockedBuffer{}
	srv.Stdout, srv.Stderr = logs, logs
	require.NoError(t, srv.Start())
	defer func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()
	base := "http://localhost:" + port
	testenv.WaitFor(t, 30*time.Second, "the server to answer /healthz", func() bool {
		res, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	require.NotRegexp(t, `(?m)^JOB=[0-9]`, block, "the job id comes from the create answer")
	token, err := auth.MintHS256([]byte(auth.DevJWTSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	// Twice: the second run's job is 2, which a hard-coded id would miss.
	for want := int64(1); want <= 2; want++ {
		script := "set -euo pipefail\n" + strings.ReplaceAll(block, "localhost:8080", "localhost:"+port)
		cmd := exec.Command("bash", "-c", script)
		cmd.Dir = root
		cmd.Env = cleanEnv()
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), "walk-through failed:\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
		require.Contains(t, stdout.String(), fmt.Sprintf(`{"jobId":%d,"status":"pending"}`, want))
		require.Contains(t, stdout.String(), fmt.Sprintf(`"id":%d,`, want), "the GET shows the job just created")

		var job struct {
			Status string `json:"status"`
			Result struct {
				Title string `json:"title"`
			} `json:"result"`
		}
		testenv.WaitFor(t, 10*time.Second, "the walk-through's job to complete", func() bool {
			req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/jobs/%d", base, want), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			defer res.Body.Close()
			return json.NewDecoder(res.Body).Decode(&job) == nil && job.Status == "completed"
		})
		require.Contains(t, job.Result.Title, "jobhook")
	}
	require.Contains(t, logs.String(), "queue: embedded Redis", "serve logs the backend it chose")
}

// lockedBuffer collects the server's output while the test reads it.
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

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// cleanEnv is the test's environment without jobhook's settings, as on a
// newcomer's machine.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET", "WORKER_SECRET", "APP_ENV", "PORT", "SQLITE_PATH", "INPROCESS_WORKER":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// TestReadmeGoVersion: README asks for the Go version go.mod names.
func TestReadmeGoVersion(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	require.NotNil(t, m, "go.mod has a go line")
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), "Go "+string(m[1])+" or newer")
	require.Contains(t, string(readme), "go build -o jobhook ./cmd/jobhook", "README says how to build the binary")
}

// TestReadmeListsEveryCommand: README's command table has a row for each
// command.
func TestReadmeListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "\n## Commands\n")
	require.True(t, ok, "README has a Commands section")
	section, _, _ = strings.Cut(section, "\n## ")
	for path, c := range commands(t) {
		if c.HasAvailableSubCommands() {
			continue
		}
		found := false
		parent, name, _ := strings.Cut(path, " ")
		for _, line := range strings.Split(section, "\n") {
			// "| `jobhook schedules list`", or one row for a group's
			// commands: "| `jobhook migrate up\|down\|status`".
			found = found || strings.HasPrefix(line, "| `jobhook "+path) ||
				(name != "" && strings.HasPrefix(line, "| `jobhook "+parent+" ") && strings.Contains(strings.SplitN(line, " | ", 2)[0], name))
		}
		require.True(t, found, "README's command table lacks jobhook %s", path)
	}
}
