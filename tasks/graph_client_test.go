package tasks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

const graphTestToken = "EAAtok/SECRET+token=123"

// graphCheckpoints captures SaveCheckpoint calls, as the worker would
// store them on the job row.
type graphCheckpoints struct {
	mu    sync.Mutex
	saves [][]byte
}

func (s *graphCheckpoints) save(_ context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves = append(s.saves, b)
	return nil
}

func (s *graphCheckpoints) last() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.saves) == 0 {
		return nil
	}
	return s.saves[len(s.saves)-1]
}

func (s *graphCheckpoints) all() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.saves...)
}

func newGraphFake(t *testing.T) *graph.Server {
	t.Helper()
	f := graph.New()
	f.Token = graphTestToken
	t.Cleanup(f.Close)
	return f
}

func graphTestConfig(f *graph.Server, cps *graphCheckpoints) tasks.GraphConfig {
	return tasks.GraphConfig{
		BaseURL:        f.URL,
		Version:        "v25.0",
		HTTPClient:     f.Client(),
		PollInterval:   time.Millisecond,
		MaxPolls:       10,
		Timeout:        10 * time.Second,
		SaveCheckpoint: cps.save,
	}
}

// runGraphJob runs h once on a job with payload and checkpoint, as the
// worker does.
func runGraphJob(t *testing.T, ctx context.Context, h jobs.Handler, typ string, payload any, checkpoint []byte) (json.RawMessage, error) {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	job := &models.Job{ID: 7, UserID: "u1", Type: typ, Payload: models.JSON(raw), Checkpoint: models.JSON(checkpoint)}
	return h.Handle(ctx, job)
}

func graphAssertNoToken(t *testing.T, err error) {
	t.Helper()
	if err != nil && (strings.Contains(err.Error(), graphTestToken) || strings.Contains(err.Error(), "SECRET")) {
		t.Fatalf("error text carries the token: %v", err)
	}
}

func graphAssertRetryable(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	if jobs.IsPermanent(err) {
		t.Fatalf("want a retryable error, got permanent: %v", err)
	}
	graphAssertNoToken(t, err)
}

func graphAssertPermanent(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	if !jobs.IsPermanent(err) {
		t.Fatalf("want a permanent error, got: %v", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	graphAssertNoToken(t, err)
}

func graphRetryAfterOf(err error) (time.Duration, bool) {
	var r *jobs.RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}

func TestGraphErrorClassification(t *testing.T) {
	cases := []struct {
		code, subcode, status int
		transient, retry      bool
	}{
		{1, 0, 400, false, true},
		{2, 0, 400, false, true},
		{4, 0, 400, false, true},
		{17, 0, 400, false, true},
		{32, 0, 400, false, true},
		{341, 0, 400, false, true},
		{613, 0, 400, false, true},
		{80001, 0, 400, false, true},
		{190, 463, 400, false, false},
		{100, 0, 400, false, false},
		{10, 0, 403, false, false},
		{200, 0, 403, false, false},
		{506, 0, 400, false, false},
		{368, 0, 400, false, false},
		{100, 0, 400, true, true}, // is_transient wins
		{-1, 2207001, 400, false, true},
		{9007, 2207027, 400, false, true},
		{4, 2207051, 400, false, false},
		{0, 0, 503, false, true},
		{0, 0, 429, false, true},
		{0, 0, 404, false, false},
	}
	for _, c := range cases {
		e := &tasks.GraphError{Code: c.code, Subcode: c.subcode, Status: c.status, Transient: c.transient}
		if got := e.Retryable(); got != c.retry {
			t.Errorf("code %d subcode %d status %d transient %v: Retryable = %v, want %v", c.code, c.subcode, c.status, c.transient, got, c.retry)
		}
	}
	e := &tasks.GraphError{Message: "Invalid OAuth access token.", Code: 190, Subcode: 460}
	if got, want := e.Error(), "graph: Invalid OAuth access token. (code 190, subcode 460)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// Through a real jobs.Worker: the token is sealed at rest, the handler gets
// it decrypted, the checkpoint saved by the first attempt carries over to
// the retry, which reuses the container and publishes once.
func TestInstagramThroughWorkerResumesFromCheckpoint(t *testing.T) {
	b := testenv.Embedded(t)
	ctx := context.Background()
	clock := jobs.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	reg := jobs.NewRegistry()
	f := newGraphFake(t)
	cfg := graphTestConfig(f, nil)
	cfg.SaveCheckpoint = nil // jobs.SaveCheckpoint
	reg.MustRegister(tasks.TypeSocialPublishInstagram, tasks.NewSocialPublishInstagram(cfg))
	kr, err := secretbox.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Clock: clock, Logger: quiet, Secrets: kr,
		Concurrency: 1, Backoff: func(int) time.Duration { return time.Second }})
	svc, w := eng.Service(), eng.Worker()

	payload, _ := json.Marshal(graphIGPayload("https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg"))
	job, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeSocialPublishInstagram, Payload: payload, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	var stored models.Job
	if err := b.DB.Gorm.First(&stored, job.ID).Error; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stored.Payload), graphTestToken) || !strings.Contains(string(stored.Payload), secretfields.Key) {
		t.Fatalf("stored payload is not sealed: %s", stored.Payload)
	}

	f.FailNextOf(graph.CallPublish, 1, http.StatusInternalServerError, graph.GraphError("Service temporarily unavailable", "OAuthException", 2, 0, true))
	if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
		t.Fatal(err)
	}
	if err := b.DB.Gorm.First(&stored, job.ID).Error; err != nil {
		t.Fatal(err)
	}
	if len(stored.Checkpoint) == 0 || stored.Status == models.StatusCompleted {
		t.Fatalf("after the failed attempt: status %s checkpoint %s", stored.Status, stored.Checkpoint)
	}
	clock.Advance(2 * time.Second)
	if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
		t.Fatal(err)
	}
	done, err := svc.Get(ctx, "u1", job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != models.StatusCompleted {
		t.Fatalf("status %s, error %v", done.Status, done.Error)
	}
	if n := f.Calls(graph.CallCreateContainer); n != 3 {
		t.Errorf("%d containers, want 3 (2 items + carousel, none duplicated)", n)
	}
	if len(f.Publishes()) != 1 || f.DuplicatePublishes() != 0 || f.Calls(graph.CallPublish) != 2 {
		t.Errorf("publishes %v, duplicates %d, calls %d", f.Publishes(), f.DuplicatePublishes(), f.Calls(graph.CallPublish))
	}
	var res tasks.SocialPublishInstagramResult
	if err := json.Unmarshal(done.Result, &res); err != nil || res.MediaID == "" {
		t.Errorf("result %s: %v", done.Result, err)
	}
}
