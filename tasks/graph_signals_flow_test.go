package tasks_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

// reportedPause is one call of a handler's ReportFlowPause.
type reportedPause struct {
	Key    string
	After  time.Duration
	Reason string
}

// pauseReports captures ReportFlowPause calls.
type pauseReports struct {
	mu   sync.Mutex
	list []reportedPause
}

func (r *pauseReports) report(_ context.Context, key string, d time.Duration, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, reportedPause{key, d, reason})
	return nil
}

func (r *pauseReports) all() []reportedPause {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]reportedPause(nil), r.list...)
}

// has reports whether key was paused for after with reason.
func (r *pauseReports) has(key string, after time.Duration, reason string) bool {
	for _, p := range r.all() {
		if p.Key == key && p.After == after && p.Reason == reason {
			return true
		}
	}
	return false
}

// assertNoSecret fails when a key, reason or error text carries one of
// the secrets.
func assertNoSecret(t *testing.T, r *pauseReports, err error, secrets ...string) {
	t.Helper()
	texts := []string{}
	if err != nil {
		texts = append(texts, err.Error())
	}
	for _, p := range r.all() {
		texts = append(texts, p.Key, p.Reason)
	}
	for _, s := range texts {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("%q carries a secret", s)
			}
		}
	}
}

// requirePause returns the FlowPauseError in err after checking its key,
// wait and reason, and that it is not permanent.
func requirePause(t *testing.T, err error, key string, after time.Duration, reason string) *jobs.FlowPauseError {
	t.Helper()
	var p *jobs.FlowPauseError
	if !errors.As(err, &p) {
		t.Fatalf("want a FlowPauseError, got %v", err)
	}
	if jobs.IsPermanent(err) {
		t.Errorf("a pause is permanent: %v", err)
	}
	if p.Key != key || p.After != after || p.Reason != reason {
		t.Errorf("pause %q for %v (%q), want %q for %v (%q)", p.Key, p.After, p.Reason, key, after, reason)
	}
	return p
}

func newGraphIGSignals(t *testing.T) (*graph.Server, *graphCheckpoints, *pauseReports, *tasks.SocialPublishInstagram) {
	t.Helper()
	f := newGraphFake(t)
	cps, reps := &graphCheckpoints{}, &pauseReports{}
	cfg := graphTestConfig(f, cps)
	cfg.ReportFlowPause = reps.report
	return f, cps, reps, tasks.NewSocialPublishInstagram(cfg).WithEffect(newMemEffects().run)
}

const igKey = "ig:" + igUser

func TestInstagramNearLimitSucceedsAndReportsPause(t *testing.T) {
	f, _, reps, h := newGraphIGSignals(t)
	f.SetUsage(igUser, graph.Usage{CallCount: 97, TotalCPUTime: 20, TotalTime: 30, EstimatedTimeToRegainAccess: 2})
	f.SetAppUsage(&graph.AppUsage{CallCount: 10, TotalCPUTime: 99, TotalTime: 10})
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Publishes()) != 1 {
		t.Fatalf("publishes %v", f.Publishes())
	}
	if !reps.has(igKey, 132*time.Second, "business use case usage 97% (call_count), access returns in ~2 min") {
		t.Errorf("reports %+v lack the account's pause", reps.all())
	}
	if !reps.has(tasks.FlowKeyGraphApp, 66*time.Second, "app usage 99% (total_cputime)") {
		t.Errorf("reports %+v lack the app's pause", reps.all())
	}
	for _, p := range reps.all() {
		if p.Key != igKey && p.Key != tasks.FlowKeyGraphApp {
			t.Errorf("paused another key: %+v", p)
		}
	}
	assertNoSecret(t, reps, nil, graphTestToken, "SECRET")
}

func TestInstagramLowUsageReportsNothing(t *testing.T) {
	f, _, reps, h := newGraphIGSignals(t)
	f.SetUsage(igUser, graph.Usage{CallCount: 40, TotalCPUTime: 20, TotalTime: 94})
	f.SetAppUsage(&graph.AppUsage{CallCount: 10})
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
		t.Fatal(err)
	}
	if got := reps.all(); len(got) != 0 {
		t.Errorf("reports %+v", got)
	}
}

func TestInstagramMalformedUsageHeadersIgnored(t *testing.T) {
	for _, h := range []http.Header{
		{"X-Business-Use-Case-Usage": {`{"` + igUser + `":[{"call_count":`}, "X-App-Usage": {`nope`}},
		{"X-Business-Use-Case-Usage": {`{"` + igUser + `":[{"call_count":"99","estimated_time_to_regain_access":"2"}]}`}},
		{"X-Business-Use-Case-Usage": {`null`}, "X-App-Usage": {`[]`}},
	} {
		f, _, reps, hd := newGraphIGSignals(t)
		f.SetRawUsageHeaders(h)
		if _, err := runGraphJob(t, context.Background(), hd, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
			t.Fatalf("headers %v: %v", h, err)
		}
		if got := reps.all(); len(got) != 0 {
			t.Errorf("headers %v: reports %+v", h, got)
		}
	}
}

// A throttled account: the job is deferred with a pause of its key (no
// attempt burned), keeping the retry class the client gave it.
func TestInstagramThrottledPausesAccount(t *testing.T) {
	f, _, reps, h := newGraphIGSignals(t)
	f.SetUsage(igUser, graph.Usage{CallCount: 100, TotalTime: 40, EstimatedTimeToRegainAccess: 2})
	f.ThrottleNext(igUser, 1, graph.CodeInstagramThrottled, 0)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	requirePause(t, err, igKey, 132*time.Second, "Graph business use case rate limit (error 80002), access returns in ~2 min")
	var ge *tasks.GraphError
	if !errors.As(err, &ge) || ge.Code != graph.CodeInstagramThrottled {
		t.Errorf("GraphError %+v", ge)
	}
	if d, ok := graphRetryAfterOf(err); !ok || d != time.Minute {
		t.Errorf("inner retry after %v %v", d, ok)
	}
	if n := f.Calls(graph.CallCreateContainer); n != 1 || len(f.Containers()) != 0 {
		t.Errorf("%d creations, %d containers", n, len(f.Containers()))
	}
	if got := reps.all(); len(got) != 0 {
		t.Errorf("the key's pause is the error's, not a report: %+v", got)
	}
	assertNoSecret(t, reps, err, graphTestToken, "SECRET")
}

func TestInstagramAppLimitPausesEveryGraphJob(t *testing.T) {
	f, _, reps, h := newGraphIGSignals(t)
	f.SetUsage(igUser, graph.Usage{CallCount: 96})
	f.ThrottleNext(igUser, 1, graph.CodeAppLimit, 0)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	requirePause(t, err, tasks.FlowKeyGraphApp, 66*time.Second, "Graph app request limit (error 4)")
	// The account's own usage came with it: reported for its key.
	if !reps.has(igKey, 66*time.Second, "business use case usage 96% (call_count)") {
		t.Errorf("reports %+v", reps.all())
	}
}

// The quota is used up: the container is made and checkpointed, the
// publish is held back with a pause of the account; once the quota frees,
// the retry publishes the same container once.
func TestInstagramPublishingLimitPausesBeforePublish(t *testing.T) {
	f, cps, _, h := newGraphIGSignals(t)
	f.SetPublishingLimit(igUser, 100, 100)
	payload := graphIGPayload("https://cdn.example.com/a.jpg")
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, payload, nil)
	requirePause(t, err, igKey, 66*time.Minute, "Instagram publishing quota used: 100 of 100 posts in ~24 h, re-checking in ~66 min")
	if n := f.Calls(graph.CallPublish); n != 0 {
		t.Fatalf("%d publishes over the quota", n)
	}
	reqs := f.RequestsOf(graph.CallPublishingLimit)
	if len(reqs) != 1 || reqs[0].Path != "/"+igUser+"/content_publishing_limit" || reqs[0].Form.Get("fields") != "config,quota_usage" || reqs[0].TokenInQuery {
		t.Fatalf("limit requests %+v", reqs)
	}
	f.SetPublishingLimit(igUser, 99, 100)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, payload, cps.last()); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(graph.CallCreateContainer); n != 1 || len(f.Publishes()) != 1 || f.DuplicatePublishes() != 0 {
		t.Errorf("%d creations, publishes %v", n, f.Publishes())
	}
	// The fake counts that publish: the account is at its quota again.
	_, err = runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, payload, nil)
	requirePause(t, err, igKey, 66*time.Minute, "Instagram publishing quota used: 100 of 100 posts in ~24 h, re-checking in ~66 min")
}

// The quota read is advisory: when it fails, the publish goes ahead; when
// it is throttled, the throttle pauses the key.
func TestInstagramPublishingLimitReadFailures(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		f, _, _, h := newGraphIGSignals(t)
		f.FailNextOf(graph.CallPublishingLimit, 1, http.StatusInternalServerError, graph.GraphError("Service temporarily unavailable", "OAuthException", 2, 0, true))
		if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
			t.Fatal(err)
		}
		if len(f.Publishes()) != 1 {
			t.Errorf("publishes %v", f.Publishes())
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		f, _, _, h := newGraphIGSignals(t)
		f.FailNextOf(graph.CallPublishingLimit, 1, http.StatusOK, `{"data":[{"quota_usage":"many"}]}`)
		if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
			t.Fatal(err)
		}
		if len(f.Publishes()) != 1 {
			t.Errorf("publishes %v", f.Publishes())
		}
	})
	t.Run("throttled", func(t *testing.T) {
		f, _, _, h := newGraphIGSignals(t)
		f.FailNextOf(graph.CallPublishingLimit, 1, http.StatusBadRequest, graph.GraphError("Too many calls", "OAuthException", 17, 0, false))
		_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
		requirePause(t, err, igKey, 66*time.Second, "Graph user request limit (error 17)")
		if n := f.Calls(graph.CallPublish); n != 0 {
			t.Errorf("%d publishes", n)
		}
	})
}

// media_publish's own daily-limit error (the quota filled between the
// read and the publish) pauses the account for the quota wait.
func TestInstagramDailyLimitErrorPausesAccount(t *testing.T) {
	f, _, _, h := newGraphIGSignals(t)
	f.FailNextOf(graph.CallPublish, 1, http.StatusBadRequest, graph.GraphError("The account has reached its limit", "OAuthException", 9, graph.SubcodePublishingLimit, false))
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	requirePause(t, err, igKey, 66*time.Minute, "Instagram daily publishing limit reached (error 9/2207042), re-checking in ~66 min")
	if d, ok := graphRetryAfterOf(err); !ok || d != time.Hour {
		t.Errorf("inner retry after %v %v", d, ok)
	}
}

func TestFacebookThrottledPausesPage(t *testing.T) {
	f := newGraphFake(t)
	cps, reps := &graphCheckpoints{}, &pauseReports{}
	cfg := graphTestConfig(f, cps)
	cfg.ReportFlowPause = reps.report
	h := tasks.NewSocialPublishFacebook(cfg).WithEffect(newMemEffects().run)
	page := "102030405060708"
	f.SetUsage(page, graph.Usage{Type: "pages", CallCount: 100, EstimatedTimeToRegainAccess: 10})
	f.ThrottleNext(page, 1, graph.CodePagesThrottled, 0)
	payload := map[string]any{"pageId": page, "accessToken": graphTestToken, "message": "hi"}
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, payload, nil)
	requirePause(t, err, "fb:"+page, 11*time.Minute, "Graph business use case rate limit (error 80001), access returns in ~10 min")
	if strings.Contains(string(cps.last()), `"posting":true`) {
		t.Errorf("checkpoint %s still marks posting after a refused post", cps.last())
	}
	// Near the limit, the post goes through and the Page's key pauses.
	f.SetUsage(page, graph.Usage{Type: "pages", CallCount: 98})
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, payload, cps.last()); err != nil {
		t.Fatal(err)
	}
	if len(f.Posts()) != 1 || !reps.has("fb:"+page, 66*time.Second, "business use case usage 98% (call_count)") {
		t.Errorf("posts %d, reports %+v", len(f.Posts()), reps.all())
	}
	assertNoSecret(t, reps, err, graphTestToken, "SECRET")
}
