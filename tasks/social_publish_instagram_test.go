package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/jobs/secretfields"
	"github.com/jobhook/jobhook/tasks"
)

const igUser = "17841400000000001"

func graphIGPayload(urls ...string) map[string]any {
	return map[string]any{"igUserId": igUser, "accessToken": graphTestToken, "imageUrls": urls, "caption": "Hello #jobhook"}
}

func newGraphIG(t *testing.T) (*graph.Server, *graphCheckpoints, *tasks.SocialPublishInstagram) {
	t.Helper()
	f := newGraphFake(t)
	cps := &graphCheckpoints{}
	return f, cps, tasks.NewSocialPublishInstagram(graphTestConfig(f, cps)).WithEffect(newMemEffects().run)
}

func decodeIGResult(t *testing.T, raw json.RawMessage) tasks.SocialPublishInstagramResult {
	t.Helper()
	var r tasks.SocialPublishInstagramResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return r
}

func TestInstagramSingleImageSuccess(t *testing.T) {
	f, _, h := newGraphIG(t)
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := decodeIGResult(t, raw)
	if res.MediaID == "" || !strings.HasPrefix(res.Permalink, "https://www.instagram.com/p/") || res.ContainerID == "" {
		t.Fatalf("result %s", raw)
	}
	creates := f.RequestsOf(graph.CallCreateContainer)
	if len(creates) != 1 {
		t.Fatalf("%d container creations, want 1", len(creates))
	}
	c := creates[0]
	if c.Version != "v25.0" || c.Path != "/"+igUser+"/media" || !strings.HasPrefix(c.ContentType, "application/x-www-form-urlencoded") {
		t.Errorf("create request %+v", c)
	}
	if c.Form.Get("image_url") != "https://cdn.example.com/a.jpg" || c.Form.Get("caption") != "Hello #jobhook" || c.Form.Has("is_carousel_item") {
		t.Errorf("create form %v", c.Form)
	}
	pubs := f.RequestsOf(graph.CallPublish)
	if len(pubs) != 1 || pubs[0].Form.Get("creation_id") != res.ContainerID {
		t.Fatalf("publishes %+v", pubs)
	}
	for _, r := range f.Requests() {
		if r.Token != graphTestToken || r.TokenInQuery {
			t.Errorf("%s %s: token %q in query %v", r.Method, r.Path, r.Token, r.TokenInQuery)
		}
	}
	if f.DuplicatePublishes() != 0 {
		t.Error("duplicate publish")
	}
}

func TestInstagramCarouselSuccess(t *testing.T) {
	f, cps, h := newGraphIG(t)
	urls := []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg", "https://cdn.example.com/3.jpg"}
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload(urls...), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := decodeIGResult(t, raw)
	creates := f.RequestsOf(graph.CallCreateContainer)
	if len(creates) != 4 {
		t.Fatalf("%d container creations, want 4", len(creates))
	}
	cs := f.Containers()
	for i := range 3 {
		if creates[i].Form.Get("image_url") != urls[i] || creates[i].Form.Get("is_carousel_item") != "true" || creates[i].Form.Has("caption") {
			t.Errorf("item %d form %v", i, creates[i].Form)
		}
	}
	parent := creates[3].Form
	want := cs[0].ID + "," + cs[1].ID + "," + cs[2].ID
	if parent.Get("media_type") != "CAROUSEL" || parent.Get("children") != want || parent.Get("caption") != "Hello #jobhook" {
		t.Errorf("carousel form %v, want children %s", parent, want)
	}
	if res.ContainerID != cs[3].ID || strings.Join(res.Children, ",") != want {
		t.Errorf("result %s", raw)
	}
	if p := f.Publishes(); len(p) != 1 || p[cs[3].ID] != 1 {
		t.Errorf("publishes %v", p)
	}
	// A checkpoint after each container; the publish is an effect.
	if n := len(cps.all()); n != 4 {
		t.Errorf("%d checkpoints, want 4", n)
	}
}

func TestInstagramContainerInProgress(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.SetInProgressPolls(3)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(graph.CallStatus); n != 4 {
		t.Errorf("%d status polls, want 4 (3 IN_PROGRESS, then FINISHED)", n)
	}
	if n := f.Calls(graph.CallPublish); n != 1 {
		t.Errorf("%d publishes", n)
	}
}

func TestInstagramStillInProgressAfterMaxPolls(t *testing.T) {
	f, cps, h := newGraphIG(t)
	f.SetInProgressPolls(100)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertRetryable(t, err)
	if n := f.Calls(graph.CallStatus); n != 10 {
		t.Errorf("%d polls, want MaxPolls (10)", n)
	}
	// The retry resumes polling the same container.
	f.SetInProgressPolls(0)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last()); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(graph.CallCreateContainer); n != 1 {
		t.Errorf("%d containers, want 1", n)
	}
}

func TestInstagramContainerErrorAndExpired(t *testing.T) {
	for _, st := range []string{"ERROR", "EXPIRED"} {
		t.Run(st, func(t *testing.T) {
			f, cps, h := newGraphIG(t)
			f.SetFinalStatus(st)
			_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
			graphAssertPermanent(t, err, st)
			if f.Calls(graph.CallPublish) != 0 {
				t.Error("published a failed container")
			}
			if got := string(cps.last()); got != "{}" {
				t.Errorf("checkpoint %s, want cleared", got)
			}
		})
	}
}

func TestInstagramTransientThenSuccess(t *testing.T) {
	f, cps, h := newGraphIG(t)
	f.FailNextGraph(1, 0, 2, 0, "An unexpected error has occurred. Please retry your request later.", true)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertRetryable(t, err)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last()); err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(graph.CallPublish); n != 1 {
		t.Errorf("%d publishes", n)
	}
}

func TestInstagramRateLimitRetryAfter(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.FailNext(1, http.StatusTooManyRequests, graph.GraphError("Application request limit reached", "OAuthException", 4, 0, false), http.Header{"Retry-After": {"7"}})
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertRetryable(t, err)
	if d, ok := graphRetryAfterOf(err); !ok || d != 7*time.Second {
		t.Errorf("retry after %v %v, want 7s", d, ok)
	}
	f.FailNextGraph(1, 0, 32, 0, "Page request limit reached", false)
	_, err = runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if d, ok := graphRetryAfterOf(err); !ok || d != time.Minute {
		t.Errorf("retry after %v %v, want 1m: %v", d, ok, err)
	}
}

func TestInstagramPermanentError(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.FailNextGraph(1, 0, 190, 463, "Error validating access token: Session has expired on Friday.", false)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertPermanent(t, err, "graph: Error validating access token: Session has expired on Friday. (code 190, subcode 463)")
	var ge *tasks.GraphError
	if !errors.As(err, &ge) || ge.Code != 190 || ge.FBTraceID == "" {
		t.Errorf("GraphError %+v", ge)
	}
	if f.Calls(graph.CallPublish) != 0 {
		t.Error("published after a permanent error")
	}
}

func TestInstagramWrongTokenIsPermanent(t *testing.T) {
	f, _, h := newGraphIG(t)
	p := graphIGPayload("https://cdn.example.com/a.jpg")
	p["accessToken"] = "EAAother"
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, p, nil)
	graphAssertPermanent(t, err, "code 190")
	_ = f
}

func TestInstagramErrorEchoingTokenIsScrubbed(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.FailNextGraph(1, 0, 100, 0, "Invalid parameter access_token="+graphTestToken, false)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertPermanent(t, err, secretfields.Redacted, "code 100")
}

// TestInstagramErrorEchoingTokenInAnyFormIsScrubbed: the Graph client
// scrubs with secretfields.Scrub, so an echo of the token in another case
// or with HTML character references is scrubbed too.
func TestInstagramErrorEchoingTokenInAnyFormIsScrubbed(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.FailNextGraph(1, 0, 100, 0, "bad token "+strings.ToLower(graphTestToken)+", "+strings.ToUpper(graphTestToken)+
		" and &#69;AAtok&#x2F;SECRET&#43;token&equals;123", false)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertPermanent(t, err, "bad token "+secretfields.Redacted+", "+secretfields.Redacted+" and "+secretfields.Redacted, "code 100")
	if strings.Contains(strings.ToLower(err.Error()), "secret") {
		t.Fatalf("error text carries the token: %v", err)
	}
}

func TestInstagramMalformedResponse(t *testing.T) {
	f, cps, h := newGraphIG(t)
	f.MalformedNext(1)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertRetryable(t, err)
	if !strings.Contains(err.Error(), "unreadable response") {
		t.Errorf("error %v", err)
	}
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last()); err != nil {
		t.Fatal(err)
	}
}

func TestInstagramTimeout(t *testing.T) {
	f, _, h := newGraphIG(t)
	f.HangNext(1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := runGraphJob(t, ctx, h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	graphAssertRetryable(t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline", err)
	}
}

// A failure between container creation and publish: the retry reuses the
// containers and publishes exactly once.
func TestInstagramRetryReusesContainers(t *testing.T) {
	for _, n := range []int{1, 3} {
		f, cps, h := newGraphIG(t)
		urls := []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg", "https://cdn.example.com/3.jpg"}[:n]
		f.FailNextOf(graph.CallPublish, 1, http.StatusInternalServerError, graph.GraphError("Service temporarily unavailable", "OAuthException", 2, 0, true))
		_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload(urls...), nil)
		graphAssertRetryable(t, err)
		created := f.Calls(graph.CallCreateContainer)
		raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload(urls...), cps.last())
		if err != nil {
			t.Fatal(err)
		}
		wantContainers := n
		if n > 1 {
			wantContainers = n + 1
		}
		if got := f.Calls(graph.CallCreateContainer); got != created || got != wantContainers {
			t.Errorf("n=%d: %d containers after the retry (%d before), want %d", n, got, created, wantContainers)
		}
		pubs := f.Publishes()
		if len(pubs) != 1 || f.DuplicatePublishes() != 0 {
			t.Errorf("n=%d: publishes %v, duplicates %d", n, pubs, f.DuplicatePublishes())
		}
		if decodeIGResult(t, raw).MediaID == "" {
			t.Errorf("result %s", raw)
		}
		// A third run with the final checkpoint and the publish recorded
		// makes no call but the permalink's read.
		before := len(f.Requests())
		raw2, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload(urls...), cps.last())
		if err != nil || len(f.Requests()) != before+1 || f.Requests()[before].Kind != graph.CallMedia || decodeIGResult(t, raw2).MediaID != decodeIGResult(t, raw).MediaID {
			t.Errorf("n=%d: rerun after publish: %s, %v, %d new calls", n, raw2, err, len(f.Requests())-before)
		}
	}
}

// The publish went through but the write of its id was lost: the retry
// reads the container as PUBLISHED, finds the media among the account's
// recent media, adopts its id and does not publish again.
func TestInstagramLostPublishAnswer(t *testing.T) {
	f := newGraphFake(t)
	cps := &graphCheckpoints{}
	effects := newMemEffects()
	h := tasks.NewSocialPublishInstagram(graphTestConfig(f, cps)).WithEffect(effects.run)
	first, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	effects.loseIDs()
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), cps.last())
	if err != nil {
		t.Fatal(err)
	}
	if f.Calls(graph.CallPublish) != 1 || f.DuplicatePublishes() != 0 || f.PublishedCount(igUser) != 1 {
		t.Errorf("publishes %d, duplicates %d", f.Calls(graph.CallPublish), f.DuplicatePublishes())
	}
	res := decodeIGResult(t, raw)
	if res.Publish != tasks.PublishAdopted || res.MediaID != decodeIGResult(t, first).MediaID || f.Calls(graph.CallListMedia) != 1 {
		t.Errorf("result %s, first %s, %d lookups", raw, first, f.Calls(graph.CallListMedia))
	}
}

// Outside a worker, without WithEffect, the publish step refuses to run:
// jobs.Effect needs the job's row.
func TestInstagramDefaultEffectNeedsWorker(t *testing.T) {
	f := newGraphFake(t)
	h := tasks.NewSocialPublishInstagram(graphTestConfig(f, &graphCheckpoints{}))
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if !errors.Is(err, jobs.ErrNoJob) {
		t.Fatalf("error %v, want ErrNoJob", err)
	}
	if f.Calls(graph.CallPublish) != 0 {
		t.Error("published without an effect record")
	}
}

func TestInstagramHandlerContract(t *testing.T) {
	h := tasks.NewSocialPublishInstagram(tasks.GraphConfig{})
	var _ jobs.Handler = h
	var _ jobs.PayloadValidator = h
	var _ jobs.TimeoutHandler = h
	var _ jobs.SecretFielder = h
	if got := h.SecretFields(); len(got) != 1 || got[0] != "accessToken" {
		t.Errorf("SecretFields = %v", got)
	}
	if h.Timeout() <= tasks.GraphTimeoutDefault {
		t.Errorf("Timeout = %v", h.Timeout())
	}
}

func TestInstagramValidatePayload(t *testing.T) {
	h := tasks.NewSocialPublishInstagram(tasks.GraphConfig{})
	ok := `{"igUserId":"17841400000000001","accessToken":"EAAB","imageUrls":["https://a.example/1.jpg"],"caption":"hi"}`
	eleven := `["https://a/1","https://a/2","https://a/3","https://a/4","https://a/5","https://a/6","https://a/7","https://a/8","https://a/9","https://a/10","https://a/11"]`
	cases := []struct {
		name, payload string
		fields        []string // empty: valid
	}{
		{"single", ok, nil},
		{"carousel", `{"igUserId":"1","accessToken":"t","imageUrls":["https://a.example/1.jpg","https://a.example/2.jpg"]}`, nil},
		{"not an object", `[1]`, []string{}},
		{"null", `null`, []string{}},
		{"missing all", `{}`, []string{"igUserId", "accessToken", "imageUrls"}},
		{"bad id", `{"igUserId":"../me","accessToken":"t","imageUrls":["https://a/1"]}`, []string{"igUserId"}},
		{"token number", `{"igUserId":"1","accessToken":5,"imageUrls":["https://a/1"]}`, []string{"accessToken"}},
		{"token blank", `{"igUserId":"1","accessToken":"  ","imageUrls":["https://a/1"]}`, []string{"accessToken"}},
		{"http url", `{"igUserId":"1","accessToken":"t","imageUrls":["http://a/1"]}`, []string{"imageUrls[0]"}},
		{"relative url", `{"igUserId":"1","accessToken":"t","imageUrls":["https://a/1","/x.jpg"]}`, []string{"imageUrls[1]"}},
		{"too many", `{"igUserId":"1","accessToken":"t","imageUrls":` + eleven + `}`, []string{"imageUrls"}},
		{"urls not array", `{"igUserId":"1","accessToken":"t","imageUrls":"https://a/1"}`, []string{"imageUrls"}},
		{"caption too long", `{"igUserId":"1","accessToken":"t","imageUrls":["https://a/1"],"caption":"` + strings.Repeat("é", 2201) + `"}`, []string{"caption"}},
		{"caption at limit", `{"igUserId":"1","accessToken":"t","imageUrls":["https://a/1"],"caption":"` + strings.Repeat("é", 2200) + `"}`, nil},
		{"unknown field", `{"igUserId":"1","accessToken":"t","imageUrls":["https://a/1"],"captoin":"x"}`, []string{"captoin"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := h.ValidatePayload(json.RawMessage(c.payload))
			graphCheckValidation(t, err, c.fields)
		})
	}
}

func graphCheckValidation(t *testing.T, err error, fields []string) {
	t.Helper()
	if fields == nil {
		if err != nil {
			t.Fatalf("want valid, got %v", err)
		}
		return
	}
	var ve *jobs.ValidationError
	if !errors.As(err, &ve) || ve.Code != "invalid_payload" {
		t.Fatalf("want invalid_payload ValidationError, got %v", err)
	}
	var got []string
	for _, f := range ve.Fields {
		got = append(got, f.Field)
	}
	if strings.Join(got, ",") != strings.Join(fields, ",") {
		t.Errorf("fields %v, want %v (%v)", got, fields, err)
	}
}

func FuzzInstagramValidatePayload(f *testing.F) {
	for _, s := range []string{
		`{"igUserId":"17841400000000001","accessToken":"EAAB","imageUrls":["https://a.example/1.jpg"],"caption":"hi"}`,
		`{"igUserId":"1","accessToken":"t","imageUrls":["https://a/1","https://a/2"]}`,
		`{}`, `null`, `[]`, `{"imageUrls":[null]}`, `{"accessToken":{"$secret":"x"}}`,
		`{"igUserId":"1","accessToken":"t","imageUrls":["https://user@a/1"]}`,
	} {
		f.Add(s)
	}
	h := tasks.NewSocialPublishInstagram(tasks.GraphConfig{})
	f.Fuzz(func(t *testing.T, s string) {
		err := h.ValidatePayload(json.RawMessage(s))
		if err == nil {
			return
		}
		var ve *jobs.ValidationError
		if !errors.As(err, &ve) || ve.Code != "invalid_payload" {
			t.Fatalf("not a ValidationError: %v", err)
		}
		var p struct {
			AccessToken string `json:"accessToken"`
		}
		if json.Unmarshal([]byte(s), &p) == nil && len(p.AccessToken) >= 8 && strings.Contains(err.Error(), p.AccessToken) {
			t.Fatalf("error quotes the token: %v", err)
		}
	})
}

// Without an injected store the handler saves through jobs.SaveCheckpoint,
// which needs the worker's context.
func TestInstagramDefaultCheckpointNeedsWorker(t *testing.T) {
	f := newGraphFake(t)
	cfg := graphTestConfig(f, &graphCheckpoints{})
	cfg.SaveCheckpoint = nil
	h := tasks.NewSocialPublishInstagram(cfg)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishInstagram, graphIGPayload("https://cdn.example.com/a.jpg"), nil)
	if !errors.Is(err, jobs.ErrNoJob) {
		t.Fatalf("error %v, want ErrNoJob", err)
	}
	if f.Calls(graph.CallPublish) != 0 {
		t.Error("published without a checkpoint")
	}
}
