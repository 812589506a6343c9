package tasks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// signalsEngine starts an engine running reg's types on b with a manual
// clock, one job at a time unless a tune changes its config.
func signalsEngine(t *testing.T, b testenv.Backend, reg *jobs.Registry, tune ...func(*jobs.Config)) (*jobs.Engine, *jobs.ManualClock) {
	t.Helper()
	clock := jobs.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	kr, err := secretbox.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Clock: clock, Logger: quiet,
		Secrets: kr, Concurrency: 1, Backoff: func(int) time.Duration { return time.Second }}
	for _, f := range tune {
		f(&cfg)
	}
	eng := jobstest.Start(t, cfg)
	return eng, clock
}

// engineReports passes each report on to jobs.ReportFlowPause, as the
// default does, and records what it answered: nil shows that the
// handler's context reached the engine through the HTTP call.
type engineReports struct {
	pauseReports
	mu   sync.Mutex
	errs []error
}

func (r *engineReports) report(ctx context.Context, key string, d time.Duration, reason string) error {
	_ = r.pauseReports.report(ctx, key, d, reason)
	err := jobs.ReportFlowPause(ctx, key, d, reason)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
	return err
}

// requireReachedEngine checks that n reports were made, all accepted.
func (r *engineReports) requireReachedEngine(t *testing.T, n int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) != n {
		t.Fatalf("%d reports, want %d: %+v", len(r.errs), n, r.all())
	}
	for _, err := range r.errs {
		if err != nil {
			t.Errorf("ReportFlowPause from the handler: %v", err)
		}
	}
}

// drainAndLoad drains once and returns the job's row.
func drainAndLoad(t *testing.T, b testenv.Backend, w *jobs.Worker, id int64) models.Job {
	t.Helper()
	if _, err := w.Drain(context.Background(), jobs.DefaultDrainBudget); err != nil {
		t.Fatal(err)
	}
	var row models.Job
	if err := b.DB.Gorm.First(&row, id).Error; err != nil {
		t.Fatal(err)
	}
	return row
}

// requireDeferred checks that a run was deferred by a pause: pending, no
// attempt counted, the reason on the job, the next run no sooner than the
// pause.
func requireDeferred(t *testing.T, row models.Job, now time.Time, pause time.Duration, reason string) {
	t.Helper()
	if row.Status != models.StatusPending || row.Attempts != 0 {
		t.Fatalf("status %s, attempts %d, error %q; want pending with no attempt counted", row.Status, row.Attempts, row.Error)
	}
	if !strings.Contains(row.Error, reason) {
		t.Errorf("error %q does not give the reason %q", row.Error, reason)
	}
	if got := row.NextRunAt.Sub(now); got < pause {
		t.Errorf("next run in %v, sooner than the pause %v", got, pause)
	}
}

// An Instagram account throttled for 2 minutes: through a real worker the
// job waits without using an attempt, then publishes once.
func TestInstagramThrottleThroughWorker(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		f := newGraphFake(t)
		cfg := graphTestConfig(f, nil)
		cfg.SaveCheckpoint = nil
		reps := &engineReports{}
		cfg.ReportFlowPause = reps.report
		reg := jobs.NewRegistry()
		reg.MustRegister(tasks.TypeSocialPublishInstagram, tasks.NewSocialPublishInstagram(cfg))
		eng, clock := signalsEngine(t, b, reg)
		svc, w := eng.Service(), eng.Worker()

		payload, _ := json.Marshal(graphIGPayload("https://cdn.example.com/a.jpg"))
		job, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeSocialPublishInstagram, Payload: payload, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		f.SetUsage(igUser, graph.Usage{CallCount: 100, EstimatedTimeToRegainAccess: 2})
		f.ThrottleNext(igUser, -1, graph.CodeInstagramThrottled, 0)
		for range 2 { // deferred again and again, never out of attempts (maxAttempts 1)
			row := drainAndLoad(t, b, w, job.ID)
			requireDeferred(t, row, clock.Now(), 132*time.Second, "business use case rate limit (error 80002), access returns in ~2 min")
			clock.Advance(row.NextRunAt.Sub(clock.Now()))
		}
		f.Unthrottle(igUser)
		f.SetUsage(igUser, graph.Usage{CallCount: 97}) // near the limit: reported, the job succeeds
		row := drainAndLoad(t, b, w, job.ID)
		if row.Status != models.StatusCompleted || row.Attempts != 1 {
			t.Fatalf("status %s, attempts %d, error %q", row.Status, row.Attempts, row.Error)
		}
		if len(f.Publishes()) != 1 || f.DuplicatePublishes() != 0 {
			t.Errorf("publishes %v", f.Publishes())
		}
		// One report per answer of the successful run (create, status,
		// publishing limit, publish, permalink).
		reps.requireReachedEngine(t, 5)
		if !reps.has(igKey, 66*time.Second, "business use case usage 97% (call_count)") {
			t.Errorf("reports %+v", reps.all())
		}
		if strings.Contains(row.Error, graphTestToken) {
			t.Error("the token is on the job")
		}
	})
}

// A model out of requests: a 429 with Retry-After 3 defers its job with a
// pause of 3.3 s; a job on another model runs.
func TestOpenAIRateLimitThroughWorker(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		const key = "sk-worker-SECRET-key"
		fake := openaifake.New(t, key)
		reg := jobs.NewRegistry()
		reps := &engineReports{}
		reg.MustRegister(tasks.TypeAITextGeneration, tasks.NewAITextGeneration(tasks.OpenAIConfig{BaseURL: fake.URL, APIKey: key, ReportFlowPause: reps.report}))
		eng, clock := signalsEngine(t, b, reg)
		svc, w := eng.Service(), eng.Worker()

		fake.RateLimitNext("gpt-4o", 1, "3")
		limited, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeAITextGeneration, Payload: json.RawMessage(`{"prompt":"a","model":"gpt-4o"}`), MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		row := drainAndLoad(t, b, w, limited.ID)
		requireDeferred(t, row, clock.Now(), 3300*time.Millisecond, "OpenAI rate limit (429), Retry-After ~3 s")
		if strings.Contains(row.Error, key) || strings.Contains(row.Error, "SECRET") {
			t.Errorf("the API key is on the job: %q", row.Error)
		}

		fake.SetRateLimit("gpt-4o-mini", openaifake.RateLimit{RemainingTokens: "0", ResetTokens: "2s"})
		other, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeAITextGeneration, Payload: json.RawMessage(`{"prompt":"b","model":"gpt-4o-mini"}`)})
		if err != nil {
			t.Fatal(err)
		}
		if row := drainAndLoad(t, b, w, other.ID); row.Status != models.StatusCompleted {
			t.Fatalf("the other model's job: status %s, error %q", row.Status, row.Error)
		}
		reps.requireReachedEngine(t, 1)
		if p := reps.all()[0]; p.After != 2200*time.Millisecond || !strings.HasSuffix(p.Key, ":gpt-4o-mini") || strings.Contains(p.Key+p.Reason, "SECRET") {
			t.Errorf("report %+v", p)
		}
		clock.Advance(row.NextRunAt.Sub(clock.Now()))
		if row := drainAndLoad(t, b, w, limited.ID); row.Status != models.StatusCompleted || row.Attempts != 1 {
			t.Fatalf("after the pause: status %s, attempts %d, error %q", row.Status, row.Attempts, row.Error)
		}
	})
}
