package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/auth/authtest"
	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// start builds an App from the environment and serves it on a free port.
// The port is set in PORT before the config is read, so that PUBLIC_URL,
// which the embedded QStash calls, is this server.
func start(t *testing.T, opts ...app.Option) (*app.App, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Setenv("PORT", fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(context.Background(), cfg, log, opts...)
	if err != nil {
		ln.Close()
	}
	require.NoError(t, err)
	require.NoError(t, a.Start(ln))
	return a, "http://" + ln.Addr().String()
}

func stop(t *testing.T, a *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
}

func createJob(t *testing.T, base, token, body string) int64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/api/jobs", bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
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

// TestEmbeddedRestartRunsJobsTheQueueLost stops an embedded server with
// pending jobs (its in-process Redis dies with it) and starts another on the
// same SQLite file: the jobs run.
func TestEmbeddedRestartRunsJobsTheQueueLost(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>Restart page</title></head><body><h1>Hi</h1></body></html>`)
	}))
	defer page.Close()

	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("SCRAPE_ALLOW_PRIVATE", "true")
	t.Setenv("INPROCESS_WORKER", "false")
	t.Setenv("EMBEDDED_QSTASH", "false")
	a1, base := start(t)
	token, err := auth.MintHS256([]byte(auth.DevJWTSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	var ids []int64
	for i := 0; i < 5; i++ {
		ids = append(ids, createJob(t, base, token, fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, page.URL+"/?n="+fmt.Sprint(i))))
	}
	depth, err := a1.Engine.Depth(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 5, depth.Pending)
	stop(t, a1)

	// The second run has the defaults: the embedded QStash's start-up
	// trigger drains what the reconciler restored.
	t.Setenv("EMBEDDED_QSTASH", "true")
	a2, _ := start(t)
	defer stop(t, a2)
	for _, id := range ids {
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("job %d to complete after the restart", id), func() bool {
			job, err := a2.Service.Get(context.Background(), "alice", id)
			return err == nil && job.Status == models.StatusCompleted
		})
	}
	job, err := a2.Service.Get(context.Background(), "alice", ids[0])
	require.NoError(t, err)
	var res struct{ Title string }
	require.NoError(t, json.Unmarshal(job.Result, &res))
	require.Equal(t, "Restart page", res.Title)
}

// scrapeOwnHomePage creates a web_scraping job of the app's own home page
// and waits for it to complete.
func scrapeOwnHomePage(t *testing.T, a *app.App, base string) {
	t.Helper()
	token, err := auth.MintHS256([]byte(auth.DevJWTSecret), "bob", time.Hour, time.Now())
	require.NoError(t, err)
	id := createJob(t, base, token, fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, base+"/"))
	testenv.WaitFor(t, 10*time.Second, "the job to complete", func() bool {
		job, err := a.Service.Get(context.Background(), "bob", id)
		return err == nil && job.Status == models.StatusCompleted
	})
}

// TestEmbeddedJobCompletesRightAfterCreate: with the defaults, the trigger
// published after the create reaches /api/workers through the embedded
// QStash (a signed HTTP call) and the job runs at once.
func TestEmbeddedJobCompletesRightAfterCreate(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("SCRAPE_ALLOW_PRIVATE", "true")
	a, base := start(t)
	defer stop(t, a)
	scrapeOwnHomePage(t, a, base)
	// The delivery is recorded when its answer arrives, just after the job
	// completed inside it.
	testenv.WaitFor(t, 10*time.Second, "a signed QStash delivery answered 200", func() bool {
		for _, d := range a.QStash.Deliveries() {
			if d.Header.Get("Upstash-Signature") != "" && d.Status == http.StatusOK {
				return true
			}
		}
		return false
	})
}

// TestInProcessWorkerStillAvailable: INPROCESS_WORKER=true with QStash off
// runs jobs without any worker call.
func TestInProcessWorkerStillAvailable(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("SCRAPE_ALLOW_PRIVATE", "true")
	t.Setenv("EMBEDDED_QSTASH", "false")
	t.Setenv("INPROCESS_WORKER", "true")
	a, base := start(t)
	defer stop(t, a)
	scrapeOwnHomePage(t, a, base)
}

// TestQStashSignedWorkerCall: with signing keys configured, a call signed
// for QSTASH_WORKER_URL drains, and one signed for another URL is refused.
func TestQStashSignedWorkerCall(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("INPROCESS_WORKER", "false")
	t.Setenv("QSTASH_CURRENT_SIGNING_KEY", "sig_current_app_test")
	t.Setenv("QSTASH_NEXT_SIGNING_KEY", "sig_next_app_test")
	t.Setenv("QSTASH_WORKER_URL", "https://public.example.com/api/workers")
	a, base := start(t)
	defer stop(t, a)

	call := func(sub string) *http.Response {
		body := `{}`
		sum := sha256.Sum256([]byte(body))
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"iss": "Upstash", "sub": sub, "exp": time.Now().Add(time.Minute).Unix(), "nbf": time.Now().Unix(),
			"body": base64.URLEncoding.EncodeToString(sum[:]),
		}).SignedString([]byte("sig_next_app_test"))
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, base+"/api/workers", bytes.NewBufferString(body))
		require.NoError(t, err)
		req.Header.Set("Upstash-Signature", tok)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	require.Equal(t, http.StatusOK, call("https://public.example.com/api/workers").StatusCode)
	require.Equal(t, http.StatusUnauthorized, call(base+"/api/workers").StatusCode, "sub must be the configured public URL")
}

// TestDrainCallInFlightAnswersAtShutdown: a POST /api/workers running a
// long job when shutdown begins answers 200 with what it did (the job
// released), and the job is pending again with its attempt not counted.
func TestDrainCallInFlightAnswersAtShutdown(t *testing.T) {
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("EMBEDDED_QSTASH", "false")
	// chaos_record, registered in-process: no chaos build needed.
	a, base := start(t, app.WithJobTypes(chaostask.Register))
	token, err := auth.MintHS256([]byte(auth.DevJWTSecret), "carol", time.Hour, time.Now())
	require.NoError(t, err)
	id := createJob(t, base, token, `{"type":"chaos_record","payload":{"sleepMs":10000}}`)

	type answer struct {
		status int
		body   string
	}
	answered := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/workers", nil)
		req.Header.Set("Authorization", "Bearer "+auth.DevWorkerSecret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- answer{body: err.Error()}
			return
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		answered <- answer{res.StatusCode, string(raw)}
	}()
	testenv.WaitFor(t, 10*time.Second, "the job to be running", func() bool {
		job, err := a.Service.Get(context.Background(), "carol", id)
		return err == nil && job.Status == models.StatusProcessing
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Shutdown(ctx))
	got := <-answered
	require.Equal(t, http.StatusOK, got.status, got.body)
	require.Contains(t, got.body, `"released":1`)

	// The database outlives the process: reopen it to look.
	t.Setenv("INPROCESS_WORKER", "false")
	b, _ := start(t, app.WithJobTypes(chaostask.Register))
	defer stop(t, b)
	job, err := b.Service.Get(context.Background(), "carol", id)
	require.NoError(t, err)
	require.Equal(t, models.StatusPending, job.Status)
	require.Equal(t, 0, job.Attempts, "the interrupted attempt does not count")
}

// TestJWKSUsers: with AUTH_JWKS_URL set, RS256 and ES256 tokens from the
// JWKS are users, and the development HS256 secret is no longer accepted.
func TestJWKSUsers(t *testing.T) {
	jwks := authtest.NewJWKSServer(t)
	t.Setenv("SQLITE_PATH", filepath.Join(t.TempDir(), "jobhook.db"))
	t.Setenv("EMBEDDED_QSTASH", "false")
	t.Setenv("AUTH_JWKS_URL", jwks.URL())
	a, base := start(t)
	defer stop(t, a)
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/jobs", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusOK, get(jwks.Sign(t, authtest.Claims("user_rs", time.Now()), jwks.RSAKID())))
	require.Equal(t, http.StatusOK, get(jwks.Sign(t, authtest.Claims("user_es", time.Now()), jwks.ECKID())))
	dev, err := auth.MintHS256([]byte(auth.DevJWTSecret), "mallory", time.Hour, time.Now())
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, get(dev), "the public development secret is off once a JWKS is configured")
}

// TestEmbeddedServesMetrics: the embedded default (development, no
// METRICS_TOKEN) serves /metrics, and a job created shows in it, with its
// request and the trigger published to the in-process QStash.
func TestEmbeddedServesMetrics(t *testing.T) {
	a, base := start(t)
	defer stop(t, a)
	tok, err := auth.MintHS256([]byte(auth.DevJWTSecret), "alice", time.Hour, time.Now())
	require.NoError(t, err)
	id := createJob(t, base, tok, fmt.Sprintf(`{"type":"web_scraping","payload":{"url":%q}}`, base+"/"))
	require.NotZero(t, id)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get(base + "/metrics")
		require.NoError(t, err)
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		body := string(raw)
		if strings.Contains(body, `jobhook_jobs_created_total{type="web_scraping"} 1`) &&
			strings.Contains(body, `jobhook_http_requests_total{code="201",method="POST",route="/api/jobs"} 1`) &&
			strings.Contains(body, `jobhook_queue_depth_up 1`) &&
			strings.Contains(body, `jobhook_qstash_publishes_total{kind="trigger",result="ok"}`) {
			return
		}
		require.True(t, time.Now().Before(deadline), "metrics never showed the job:\n%s", body)
		time.Sleep(50 * time.Millisecond)
	}
}
