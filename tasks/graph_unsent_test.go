package tasks_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// closedAddr returns a loopback address nothing listens on: a listener's,
// closed. A connection to it is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// routeTransport sends the requests down() picks to the address dead (a
// closed port: connection refused) and the others to the fake, through a
// real http.Transport.
type routeTransport struct {
	base *http.Transport
	dead string
	down func(*http.Request) bool
}

func (rt *routeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt.down(req) {
		req = req.Clone(req.Context())
		req.URL.Host = rt.dead
		req.Host = rt.dead
	}
	return rt.base.RoundTrip(req)
}

// pathDown picks the requests whose path ends with one of suffixes.
func pathDown(suffixes ...string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		for _, s := range suffixes {
			if strings.HasSuffix(r.URL.Path, s) {
				return true
			}
		}
		return false
	}
}

// checkpointPosting reports whether a Facebook checkpoint marks a post call
// whose outcome is unknown.
func checkpointPosting(t *testing.T, cp []byte) bool {
	t.Helper()
	var m map[string]any
	if len(cp) > 0 {
		if err := json.Unmarshal(cp, &m); err != nil {
			t.Fatalf("checkpoint %s: %v", cp, err)
		}
	}
	return m["posting"] == true
}

// A Facebook post whose request never left (connection refused: nothing
// listens at GRAPH_API_BASE_URL) is a plain retry: the checkpoint does not
// keep the posting mark, and the next attempt posts, once.
func TestFacebookRefusedConnectionIsAPlainRetry(t *testing.T) {
	cases := []struct {
		name string
		urls []string
		down []string
	}{
		{"text post", nil, []string{"/feed"}},
		{"photo post", []string{"https://cdn.example.com/a.jpg"}, []string{"/photos"}},
		{"multi-photo post, photos uploaded, feed refused", []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg"}, []string{"/feed"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGraphFake(t)
			cps := &graphCheckpoints{}
			cfg := graphTestConfig(f, cps)
			cfg.HTTPClient = &http.Client{Transport: &routeTransport{base: f.Client().Transport.(*http.Transport), dead: closedAddr(t), down: pathDown(tc.down...)}}
			effects := newMemEffects()
			down := tasks.NewSocialPublishFacebook(cfg).WithEffect(effects.run)
			payload := graphFBPayload("Hello Page", "", tc.urls...)
			_, err := runGraphJob(t, context.Background(), down, tasks.TypeSocialPublishFacebook, payload, nil)
			graphAssertRetryable(t, err)
			if !strings.Contains(err.Error(), "never sent") {
				t.Errorf("error %q does not say the request was never sent", err)
			}
			if checkpointPosting(t, cps.last()) {
				t.Fatalf("checkpoint %s marks the post as possibly sent; the connection was refused", cps.last())
			}
			up := tasks.NewSocialPublishFacebook(graphTestConfig(f, cps)).WithEffect(effects.run)
			raw, err := runGraphJob(t, context.Background(), up, tasks.TypeSocialPublishFacebook, payload, cps.last())
			if err != nil {
				t.Fatalf("the retry must post: %v", err)
			}
			if len(f.Posts()) != 1 || decodeFBResult(t, raw).PostID == "" {
				t.Errorf("posts %v, result %s", f.Posts(), raw)
			}
			if n := f.Calls(graph.CallPhotos); len(tc.urls) > 1 && n != len(tc.urls) {
				t.Errorf("%d photo uploads, want %d (none again)", n, len(tc.urls))
			}
		})
	}
}

// The whole Graph host down (127.0.0.1:1, as in the issue) and a DNS
// failure: never sent, a plain retry.
func TestFacebookDialAndDNSErrorsAreNeverSent(t *testing.T) {
	dnsClient := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "graph.example", IsNotFound: true}}
		},
	}}
	for name, cfg := range map[string]tasks.GraphConfig{
		"port 1":    {BaseURL: "http://127.0.0.1:1", HTTPClient: &http.Client{Timeout: 5 * time.Second}},
		"closed":    {BaseURL: "http://" + closedAddr(t)},
		"DNS error": {BaseURL: "http://graph.example", HTTPClient: dnsClient},
	} {
		t.Run(name, func(t *testing.T) {
			cps := &graphCheckpoints{}
			cfg.Version, cfg.SaveCheckpoint, cfg.Timeout = "v25.0", cps.save, 10*time.Second
			h := tasks.NewSocialPublishFacebook(cfg).WithEffect(newMemEffects().run)
			var cp []byte
			for attempt := 1; attempt <= 3; attempt++ {
				_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), cp)
				graphAssertRetryable(t, err)
				if strings.Contains(err.Error(), "not posting again") || !strings.Contains(err.Error(), "never sent") {
					t.Fatalf("attempt %d: %v", attempt, err)
				}
				cp = cps.last()
			}
		})
	}
}

// A post request that reached Graph and lost its answer (the connection is
// reset after the request was read, and the post exists) is an unknown
// outcome: the retry finds the post among the Page's recent posts and
// adopts it, without posting again.
func TestFacebookResetAfterSendIsUnknown(t *testing.T) {
	f, cps, h := newGraphFB(t)
	f.DropAnswerNextOf(graph.CallFeed, 1)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil)
	graphAssertRetryable(t, err)
	if strings.Contains(err.Error(), "never sent") {
		t.Fatalf("a reset after the request was read is not 'never sent': %v", err)
	}
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), cps.last())
	if err != nil {
		t.Fatal(err)
	}
	res := decodeFBResult(t, raw)
	if n := len(f.Posts()); n != 1 || res.Publish != tasks.PublishAdopted || f.Posts()[res.PostID] == nil {
		t.Errorf("%d posts (want 1) %v, result %s", n, f.Posts(), raw)
	}
}

// Instagram's media_publish refused (never sent): a plain retry that
// publishes once. Reset after Graph published: the retry reads the
// container as PUBLISHED, finds the media and adopts it, without
// publishing again.
func TestInstagramPublishNeverSentAndUnknown(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		f := newGraphFake(t)
		cps := &graphCheckpoints{}
		cfg := graphTestConfig(f, cps)
		cfg.HTTPClient = &http.Client{Transport: &routeTransport{base: f.Client().Transport.(*http.Transport), dead: closedAddr(t), down: pathDown("/media_publish")}}
		effects := newMemEffects()
		_, err := runGraphJob(t, context.Background(), tasks.NewSocialPublishInstagram(cfg).WithEffect(effects.run), tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
		graphAssertRetryable(t, err)
		if !strings.Contains(err.Error(), "never sent") {
			t.Errorf("error %q does not say the request was never sent", err)
		}
		raw, err := runGraphJob(t, context.Background(), tasks.NewSocialPublishInstagram(graphTestConfig(f, cps)).WithEffect(effects.run), tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last())
		if err != nil {
			t.Fatal(err)
		}
		if decodeIGResult(t, raw).MediaID == "" || len(f.Publishes()) != 1 || f.Calls(graph.CallCreateContainer) != 1 {
			t.Errorf("result %s, publishes %v, containers %d", raw, f.Publishes(), f.Calls(graph.CallCreateContainer))
		}
	})
	t.Run("reset after publish", func(t *testing.T) {
		f, cps, h := newGraphIG(t)
		f.DropAnswerNextOf(graph.CallPublish, 1)
		_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
		graphAssertRetryable(t, err)
		if strings.Contains(err.Error(), "never sent") {
			t.Fatalf("not 'never sent': %v", err)
		}
		raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last())
		if err != nil {
			t.Fatal(err)
		}
		res := decodeIGResult(t, raw)
		if f.Calls(graph.CallPublish) != 1 || f.DuplicatePublishes() != 0 || res.ContainerID == "" || res.Publish != tasks.PublishAdopted || res.MediaID == "" {
			t.Errorf("publish calls %d, duplicates %d, result %s", f.Calls(graph.CallPublish), f.DuplicatePublishes(), raw)
		}
	})
}

// switchTransport refuses every request while down is set (a closed port),
// and sends them to the fake otherwise.
type switchTransport struct {
	routeTransport
	isDown atomic.Bool
}

func newSwitchTransport(t *testing.T, f *graph.Server) *switchTransport {
	st := &switchTransport{}
	st.routeTransport = routeTransport{base: f.Client().Transport.(*http.Transport), dead: closedAddr(t),
		down: func(*http.Request) bool { return st.isDown.Load() }}
	return st
}

// Through the worker and the service, on both backends: with Graph
// unreachable every attempt of a Facebook post is a plain retry, the job
// fails when its attempts are spent (not "not posting again"), and a
// retry (POST /api/jobs/ID/retry: Service.Retry) posts, once.
func TestFacebookNeverSentThenRetryPosts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		clock := jobs.NewManualClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
		f := newGraphFake(t)
		st := newSwitchTransport(t, f)
		st.isDown.Store(true)
		cfg := graphTestConfig(f, nil)
		cfg.SaveCheckpoint = nil // jobs.SaveCheckpoint: the job row
		cfg.HTTPClient = &http.Client{Transport: st}
		reg := jobs.NewRegistry()
		reg.MustRegister(tasks.TypeSocialPublishFacebook, tasks.NewSocialPublishFacebook(cfg))
		kr, err := secretbox.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Clock: clock, Logger: quiet, Secrets: kr,
			Concurrency: 1, Backoff: func(int) time.Duration { return time.Second }})
		svc, w := eng.Service(), eng.Worker()

		payload, _ := json.Marshal(graphFBPayload("Hello Page", ""))
		job, _, err := svc.Create(ctx, jobs.CreateRequest{UserID: "u1", Type: tasks.TypeSocialPublishFacebook, Payload: payload, MaxAttempts: 3})
		if err != nil {
			t.Fatal(err)
		}
		get := func() *models.Job {
			t.Helper()
			j, err := svc.Get(ctx, "u1", job.ID)
			if err != nil {
				t.Fatal(err)
			}
			return j
		}
		for attempt := 1; attempt <= 3; attempt++ {
			if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
				t.Fatal(err)
			}
			clock.Advance(2 * time.Second)
		}
		failed := get()
		if failed.Status != models.StatusFailed || failed.Attempts != 3 {
			t.Fatalf("status %s after %d attempts (error %q), want failed after 3", failed.Status, failed.Attempts, failed.Error)
		}
		if strings.Contains(failed.Error, "not posting again") || !strings.Contains(failed.Error, "never sent") {
			t.Fatalf("error %q: a refused connection is a plain retry", failed.Error)
		}

		st.isDown.Store(false)
		if _, err := svc.Retry(ctx, "u1", job.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Drain(ctx, jobs.DefaultDrainBudget); err != nil {
			t.Fatal(err)
		}
		done := get()
		if done.Status != models.StatusCompleted {
			t.Fatalf("after the retry: status %s, error %q", done.Status, done.Error)
		}
		if n := len(f.Posts()); n != 1 {
			t.Errorf("%d posts, want 1", n)
		}
		var res tasks.SocialPublishFacebookResult
		if err := json.Unmarshal(done.Result, &res); err != nil || res.PostID == "" {
			t.Errorf("result %s: %v", done.Result, err)
		}
	})
}

// A check matches by text and time: an older post with the same message
// (before the intent, beyond the skew) is not this job's, so the retry
// posts; the post the lost answer created is found and adopted.
func TestFacebookCheckMatchesByMessageAndTime(t *testing.T) {
	f, cps, h := newGraphFB(t)
	now := time.Now().UTC()
	old := now.Add(-time.Hour)
	f.SetClock(func() time.Time { return old })
	if _, err := runGraphJob(t, context.Background(), newGraphFBHandler(f), tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil); err != nil {
		t.Fatal(err)
	}
	f.SetClock(func() time.Time { return now })
	f.FailNextOf(graph.CallFeed, 1, http.StatusInternalServerError, graph.GraphError("Service temporarily unavailable", "OAuthException", 2, 0, true))
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil)
	graphAssertRetryable(t, err)
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), cps.last())
	if err != nil {
		t.Fatal(err)
	}
	res := decodeFBResult(t, raw)
	if f.PublishedCount(fbPage) != 2 || res.Publish != tasks.PublishPublished {
		t.Errorf("posts %d (the old one and this job's), result %s", f.PublishedCount(fbPage), raw)
	}

	// The answer of another job's post is lost: its retry adopts it.
	f.DropAnswerNextOf(graph.CallFeed, 1)
	h2 := newGraphFBHandler(f)
	_, err = runGraphJob(t, context.Background(), h2, tasks.TypeSocialPublishFacebook, graphFBPayload("hi again", ""), nil)
	graphAssertRetryable(t, err)
	raw, err = runGraphJob(t, context.Background(), h2, tasks.TypeSocialPublishFacebook, graphFBPayload("hi again", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	pubs := f.Publications()
	if res := decodeFBResult(t, raw); len(pubs) != 3 || res.Publish != tasks.PublishAdopted || res.PostID != pubs[2].ID {
		t.Errorf("result %s, publications %+v", raw, pubs)
	}
}

// An Instagram container PUBLISHED whose media is not listed (yet) is an
// error to retry, never a second publish.
func TestInstagramPublishedButNotListedRetries(t *testing.T) {
	f := newGraphFake(t)
	effects := newMemEffects()
	cps := &graphCheckpoints{}
	h := tasks.NewSocialPublishInstagram(graphTestConfig(f, cps)).WithEffect(effects.run)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
		t.Fatal(err)
	}
	effects.loseIDs()
	f.SetClock(func() time.Time { return time.Now().Add(time.Hour) })
	p := graphIGPayload("https://cdn.example.com/a.jpg")
	p["caption"] = "another caption" // the listing holds no media with this one
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, p, cps.last())
	graphAssertRetryable(t, err)
	if !strings.Contains(err.Error(), "is PUBLISHED but none of the account's recent media matches") || f.Calls(graph.CallPublish) != 1 {
		t.Errorf("error %v, %d publish calls", err, f.Calls(graph.CallPublish))
	}
}

// newGraphFBHandler is a Facebook publisher on f with effects of its own
// (another job).
func newGraphFBHandler(f *graph.Server) *tasks.SocialPublishFacebook {
	return tasks.NewSocialPublishFacebook(graphTestConfig(f, &graphCheckpoints{})).WithEffect(newMemEffects().run)
}
