package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

const fbPage = "102030405060708"

func graphFBPayload(message, link string, urls ...string) map[string]any {
	p := map[string]any{"pageId": fbPage, "accessToken": graphTestToken}
	if message != "" {
		p["message"] = message
	}
	if link != "" {
		p["link"] = link
	}
	if len(urls) > 0 {
		p["imageUrls"] = urls
	}
	return p
}

func newGraphFB(t *testing.T) (*graph.Server, *graphCheckpoints, *tasks.SocialPublishFacebook) {
	t.Helper()
	f := newGraphFake(t)
	cps := &graphCheckpoints{}
	return f, cps, tasks.NewSocialPublishFacebook(graphTestConfig(f, cps)).WithEffect(newMemEffects().run)
}

func decodeFBResult(t *testing.T, raw json.RawMessage) tasks.SocialPublishFacebookResult {
	t.Helper()
	var r tasks.SocialPublishFacebookResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return r
}

func TestFacebookTextLinkPost(t *testing.T) {
	f, _, h := newGraphFB(t)
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("Hello Page", "https://example.com/post"), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := decodeFBResult(t, raw)
	feeds := f.RequestsOf(graph.CallFeed)
	if len(feeds) != 1 || f.Calls(graph.CallPhotos) != 0 {
		t.Fatalf("feed calls %d, photo calls %d", len(feeds), f.Calls(graph.CallPhotos))
	}
	r := feeds[0]
	if r.Path != "/"+fbPage+"/feed" || r.Version != "v25.0" || !strings.HasPrefix(r.ContentType, "application/x-www-form-urlencoded") ||
		r.Form.Get("message") != "Hello Page" || r.Form.Get("link") != "https://example.com/post" || r.Token != graphTestToken || r.TokenInQuery {
		t.Errorf("feed request %+v", r)
	}
	if _, ok := f.Posts()[res.PostID]; !ok || !strings.HasPrefix(res.PostID, fbPage+"_") {
		t.Errorf("post id %q, posts %v", res.PostID, f.Posts())
	}
}

func TestFacebookSinglePhotoPost(t *testing.T) {
	f, _, h := newGraphFB(t)
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("A photo", "", "https://cdn.example.com/a.jpg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := decodeFBResult(t, raw)
	photos := f.RequestsOf(graph.CallPhotos)
	if len(photos) != 1 || f.Calls(graph.CallFeed) != 0 {
		t.Fatalf("photo calls %d, feed calls %d", len(photos), f.Calls(graph.CallFeed))
	}
	if pf := photos[0].Form; pf.Get("url") != "https://cdn.example.com/a.jpg" || pf.Get("caption") != "A photo" || pf.Has("published") {
		t.Errorf("photo form %v", pf)
	}
	if !strings.HasPrefix(res.PostID, fbPage+"_") || len(res.PhotoIDs) != 1 {
		t.Errorf("result %s", raw)
	}
}

func TestFacebookMultiPhotoPost(t *testing.T) {
	f, cps, h := newGraphFB(t)
	urls := []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg", "https://cdn.example.com/3.jpg"}
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("Three photos", "", urls...), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := decodeFBResult(t, raw)
	photos := f.RequestsOf(graph.CallPhotos)
	if len(photos) != 3 || len(res.PhotoIDs) != 3 {
		t.Fatalf("%d photo uploads, result %s", len(photos), raw)
	}
	for i, p := range photos {
		if p.Form.Get("url") != urls[i] || p.Form.Get("published") != "false" {
			t.Errorf("photo %d form %v", i, p.Form)
		}
	}
	feeds := f.RequestsOf(graph.CallFeed)
	if len(feeds) != 1 {
		t.Fatalf("%d feed calls", len(feeds))
	}
	ff := feeds[0].Form
	if ff.Get("message") != "Three photos" || ff.Has("attached_media[3]") {
		t.Errorf("feed form %v", ff)
	}
	for i, id := range res.PhotoIDs {
		if got, want := ff.Get(fmt.Sprintf("attached_media[%d]", i)), `{"media_fbid":"`+id+`"}`; got != want {
			t.Errorf("attached_media[%d] = %s, want %s", i, got, want)
		}
	}
	if res.PostID == "" {
		t.Errorf("result %s", raw)
	}
	// One checkpoint per photo; the post is an effect.
	if n := len(cps.all()); n != 3 {
		t.Errorf("%d checkpoints, want 3", n)
	}
	if res.Publish != tasks.PublishPublished {
		t.Errorf("result %s", raw)
	}
}

func TestFacebookTransientThenSuccessResumes(t *testing.T) {
	f, cps, h := newGraphFB(t)
	urls := []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg"}
	f.FailNextOf(graph.CallFeed, 1, http.StatusBadRequest, graph.GraphError("Service temporarily unavailable", "OAuthException", 2, 0, true))
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("Two", "", urls...), nil)
	graphAssertRetryable(t, err)
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("Two", "", urls...), cps.last())
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Calls(graph.CallPhotos); n != 2 {
		t.Errorf("%d photo uploads, want 2 (no re-upload on retry)", n)
	}
	if n := len(f.Posts()); n != 1 {
		t.Errorf("%d posts", n)
	}
	// Rerun with the final checkpoint: no call, same post.
	before := len(f.Requests())
	raw2, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("Two", "", urls...), cps.last())
	if err != nil || len(f.Requests()) != before || decodeFBResult(t, raw2).PostID != decodeFBResult(t, raw).PostID {
		t.Errorf("rerun: %s %v", raw2, err)
	}
}

func TestFacebookThrottledRetryAfter(t *testing.T) {
	f, _, h := newGraphFB(t)
	f.FailNextGraph(1, 0, 32, 0, "Page request limit reached", false)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil)
	graphAssertRetryable(t, err)
	if d, ok := graphRetryAfterOf(err); !ok || d != time.Minute {
		t.Errorf("retry after %v %v", d, ok)
	}
}

func TestFacebookPermanentErrors(t *testing.T) {
	cases := []struct {
		code, subcode int
		msg           string
	}{
		{190, 463, "Error validating access token: Session has expired."},
		{506, 0, "Duplicate status message"},
		{200, 0, "(#200) Requires pages_manage_posts permission"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			f, cps, h := newGraphFB(t)
			f.FailNextGraph(1, 0, c.code, c.subcode, c.msg, false)
			_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil)
			graphAssertPermanent(t, err, fmt.Sprintf("graph: %s (code %d, subcode %d)", c.msg, c.code, c.subcode))
			// Graph refused the post: the posting mark is cleared.
			var cp map[string]any
			_ = json.Unmarshal(cps.last(), &cp)
			if cp["posting"] == true {
				t.Errorf("checkpoint %s still marks posting", cps.last())
			}
			if len(f.Posts()) != 0 {
				t.Error("posted")
			}
		})
	}
}

// An unreadable answer to the post call is an unknown outcome: the retry
// checks the Page's recent posts first. Here the post was not created, so
// the retry posts, once.
func TestFacebookMalformedResponse(t *testing.T) {
	f, cps, h := newGraphFB(t)
	f.MalformedNext(1)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), nil)
	graphAssertRetryable(t, err)
	if !strings.Contains(err.Error(), "unreadable response") {
		t.Errorf("error %v", err)
	}
	raw, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("hi", ""), cps.last())
	if err != nil {
		t.Fatal(err)
	}
	if f.Calls(graph.CallPublishedPosts) != 1 || f.PublishedCount(fbPage) != 1 || decodeFBResult(t, raw).Publish != tasks.PublishPublished {
		t.Errorf("lookups %d, posts %d, result %s", f.Calls(graph.CallPublishedPosts), f.PublishedCount(fbPage), raw)
	}
}

func TestFacebookMalformedPhotoUploadRetries(t *testing.T) {
	f, cps, h := newGraphFB(t)
	urls := []string{"https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg"}
	f.MalformedNext(1)
	_, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("", "", urls...), nil)
	graphAssertRetryable(t, err)
	if _, err := runGraphJob(t, context.Background(), h, tasks.TypeSocialPublishFacebook, graphFBPayload("", "", urls...), cps.last()); err != nil {
		t.Fatal(err)
	}
	if len(f.Posts()) != 1 {
		t.Errorf("posts %v", f.Posts())
	}
}

func TestFacebookTimeout(t *testing.T) {
	f, _, h := newGraphFB(t)
	f.HangNext(1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := runGraphJob(t, ctx, h, tasks.TypeSocialPublishFacebook, graphFBPayload("", "", "https://cdn.example.com/1.jpg", "https://cdn.example.com/2.jpg"), nil)
	graphAssertRetryable(t, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline", err)
	}
}

func TestFacebookHandlerContract(t *testing.T) {
	h := tasks.NewSocialPublishFacebook(tasks.GraphConfig{})
	var _ jobs.Handler = h
	var _ jobs.PayloadValidator = h
	var _ jobs.TimeoutHandler = h
	var _ jobs.SecretFielder = h
	if got := h.SecretFields(); len(got) != 1 || got[0] != "accessToken" {
		t.Errorf("SecretFields = %v", got)
	}
}

func TestFacebookValidatePayload(t *testing.T) {
	h := tasks.NewSocialPublishFacebook(tasks.GraphConfig{})
	cases := []struct {
		name, payload string
		fields        []string
	}{
		{"text", `{"pageId":"1","accessToken":"t","message":"hi"}`, nil},
		{"link", `{"pageId":"1","accessToken":"t","link":"http://example.com/"}`, nil},
		{"photo", `{"pageId":"1","accessToken":"t","imageUrls":["https://a/1"]}`, nil},
		{"multi", `{"pageId":"1","accessToken":"t","message":"m","imageUrls":["https://a/1","https://a/2"]}`, nil},
		{"not an object", `"x"`, []string{}},
		{"missing all", `{}`, []string{"pageId", "accessToken", "message"}},
		{"nothing to post", `{"pageId":"1","accessToken":"t"}`, []string{"message"}},
		{"bad page", `{"pageId":"me/feed","accessToken":"t","message":"m"}`, []string{"pageId"}},
		{"bad link", `{"pageId":"1","accessToken":"t","link":"ftp://x/"}`, []string{"link"}},
		{"link with images", `{"pageId":"1","accessToken":"t","link":"https://x/","imageUrls":["https://a/1"]}`, []string{"link"}},
		{"bad image", `{"pageId":"1","accessToken":"t","imageUrls":["https://a/1","nope"]}`, []string{"imageUrls[1]"}},
		{"message type", `{"pageId":"1","accessToken":"t","message":3}`, []string{"message"}},
		{"unknown", `{"pageId":"1","accessToken":"t","message":"m","caption":"x"}`, []string{"caption"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			graphCheckValidation(t, h.ValidatePayload(json.RawMessage(c.payload)), c.fields)
		})
	}
}

func FuzzFacebookValidatePayload(f *testing.F) {
	for _, s := range []string{
		`{"pageId":"1","accessToken":"t","message":"hi"}`,
		`{"pageId":"1","accessToken":"t","link":"https://x/","imageUrls":["https://a/1"]}`,
		`{"pageId":"1","accessToken":"t","imageUrls":["https://a/1","https://a/2"]}`,
		`{}`, `null`, `{"message":null}`, `{"imageUrls":{}}`,
	} {
		f.Add(s)
	}
	h := tasks.NewSocialPublishFacebook(tasks.GraphConfig{})
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
