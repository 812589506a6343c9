package tasks_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// TestOneThrottledInstagramAccountWaitsWhileTheOthersPublish: three
// accounts with two posts each; the Graph API throttles one of them,
// reporting estimated_time_to_regain_access 2 (minutes). Its jobs wait
// about two minutes (manual clock) with no attempt spent and waitingFor on
// each; the other two accounts publish at once; after the window the first
// account publishes too. Every post is published once.
func TestOneThrottledInstagramAccountWaitsWhileTheOthersPublish(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		f := newGraphFake(t)
		cfg := graphTestConfig(f, nil)
		cfg.SaveCheckpoint = nil
		reg := jobs.NewRegistry()
		reg.MustRegister(tasks.TypeSocialPublishInstagram, tasks.NewSocialPublishInstagram(cfg))
		eng, clock := signalsEngine(t, b, reg, func(c *jobs.Config) {
			c.Concurrency = 6
			c.FlowLimits = tasks.DefaultFlowLimits()
		})
		svc, w := eng.Service(), eng.Worker()
		accounts := []string{"17841400000000001", "17841400000000002", "17841400000000003"}
		throttled := accounts[0]
		f.SetUsage(throttled, graph.Usage{CallCount: 100, EstimatedTimeToRegainAccess: 2})
		f.ThrottleNext(throttled, -1, graph.CodeInstagramThrottled, 0)

		byAccount := map[string][]int64{}
		for round := range 2 {
			for _, acct := range accounts {
				p := graphIGPayload("https://cdn.example.com/a.jpg")
				p["igUserId"] = acct
				p["caption"] = "post " + acct + " #" + string(rune('a'+round))
				raw, _ := json.Marshal(p)
				job, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "user-" + acct, Type: tasks.TypeSocialPublishInstagram, Payload: raw})
				if err != nil {
					t.Fatal(err)
				}
				byAccount[acct] = append(byAccount[acct], job.ID)
			}
		}
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		for _, acct := range accounts[1:] {
			for _, id := range byAccount[acct] {
				if row := load(t, b, id); row.Status != models.StatusCompleted || row.Attempts != 1 {
					t.Fatalf("account %s job %d: status %s, attempts %d, error %q", acct, id, row.Status, row.Attempts, row.Error)
				}
			}
		}
		regain := clock.Now().Add(2 * time.Minute)
		for _, id := range byAccount[throttled] {
			job, err := svc.Get(ctx, "user-"+throttled, id)
			if err != nil {
				t.Fatal(err)
			}
			if job.Status != models.StatusPending || job.Attempts != 0 {
				t.Fatalf("throttled job %d: status %s, attempts %d; want pending, none spent", id, job.Status, job.Attempts)
			}
			wf := job.WaitingFor
			if wf == nil || wf.Key != "ig:"+throttled || wf.Until == nil || !strings.Contains(wf.Reason, "access returns in ~2 min") {
				t.Fatalf("throttled job %d: waitingFor %+v", id, wf)
			}
			if wf.Until.Before(regain) || wf.Until.After(regain.Add(30*time.Second)) {
				t.Errorf("throttled job %d waits until %s; the provider said ~2 min (%s), plus a margin", id, wf.Until, regain)
			}
		}
		if n := len(f.Publishes()); n != 4 {
			t.Fatalf("%d posts published before the window ends, want the other accounts' 4", n)
		}

		// Access returns: after the window the account's posts go out.
		f.Unthrottle(throttled)
		f.ClearUsage(throttled)
		clock.Advance(2*time.Minute + 15*time.Second)
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		for _, id := range byAccount[throttled] {
			if row := load(t, b, id); row.Status != models.StatusCompleted || row.Attempts != 1 {
				t.Fatalf("throttled account's job %d after the window: status %s, attempts %d, error %q", id, row.Status, row.Attempts, row.Error)
			}
		}
		if n, d := len(f.Publishes()), f.DuplicatePublishes(); n != 6 || d != 0 {
			t.Fatalf("%d posts published (%d twice), want 6, each once", n, d)
		}
	})
}

// TestOpenAIModelOutOfRequestsPausesThreeSeconds: the fake answers
// x-ratelimit-remaining-requests 0 with x-ratelimit-reset-requests 3s for
// one model: that model's next jobs wait about 3 s (manual clock) without
// running, while another model's jobs run.
func TestOpenAIModelOutOfRequestsPausesThreeSeconds(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		const key = "sk-test-flow-key"
		fake := openaifake.New(t, key)
		reg := jobs.NewRegistry()
		reg.MustRegister(tasks.TypeAITextGeneration, tasks.NewAITextGeneration(tasks.OpenAIConfig{BaseURL: fake.URL, APIKey: key}))
		eng, clock := signalsEngine(t, b, reg)
		svc, w := eng.Service(), eng.Worker()
		create := func(model string) int64 {
			job, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeAITextGeneration,
				Payload: json.RawMessage(`{"prompt":"hi","model":"` + model + `"}`)})
			if err != nil {
				t.Fatal(err)
			}
			return job.ID
		}
		fake.SetRateLimit("gpt-4o", openaifake.RateLimit{RemainingRequests: "0", ResetRequests: "3s"})
		first := create("gpt-4o")
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		if row := load(t, b, first); row.Status != models.StatusCompleted {
			t.Fatalf("the call that used the last request: status %s, error %q", row.Status, row.Error)
		}
		fake.ClearRateLimit("gpt-4o")
		paused := []int64{create("gpt-4o"), create("gpt-4o")}
		other := create("gpt-4o-mini")
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		if row := load(t, b, other); row.Status != models.StatusCompleted {
			t.Fatalf("the other model's job: status %s, error %q", row.Status, row.Error)
		}
		for _, id := range paused {
			job, err := svc.Get(ctx, "u1", id)
			if err != nil {
				t.Fatal(err)
			}
			if job.Status != models.StatusPending || job.Attempts != 0 || job.WaitingFor == nil || !strings.HasSuffix(job.WaitingFor.Key, ":gpt-4o") {
				t.Fatalf("job %d on the paused model: status %s, attempts %d, waitingFor %+v", id, job.Status, job.Attempts, job.WaitingFor)
			}
			if d := job.WaitingFor.Until.Sub(clock.Now()); d < 3*time.Second || d > 4*time.Second {
				t.Errorf("job %d waits %s, want the 3 s reset plus its margin", id, d)
			}
		}
		clock.Advance(2 * time.Second)
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		if row := load(t, b, paused[0]); row.Status != models.StatusPending {
			t.Fatalf("2 s into a 3 s pause the job is %s", row.Status)
		}
		clock.Advance(2 * time.Second)
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		for _, id := range paused {
			if row := load(t, b, id); row.Status != models.StatusCompleted || row.Attempts != 1 {
				t.Fatalf("job %d after the pause: status %s, attempts %d, error %q", id, row.Status, row.Attempts, row.Error)
			}
		}
	})
}

func load(t *testing.T, b testenv.Backend, id int64) models.Job {
	t.Helper()
	var row models.Job
	if err := b.DB.Gorm.First(&row, id).Error; err != nil {
		t.Fatal(err)
	}
	return row
}
