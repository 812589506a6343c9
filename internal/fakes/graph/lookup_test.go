package graph

import (
	"net/url"
	"testing"
	"time"
)

// The lookups list what went out, newest first, in Graph's shape; the
// count is per account and the hook runs once per publication, before the
// answer.
func TestLookupsCountsAndHook(t *testing.T) {
	s := New()
	defer s.Close()
	s.Token = "tok"
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return at })
	var hooked []Publication
	s.OnPublished(func(p Publication) { hooked = append(hooked, p) })

	_, c := post(t, s, "/v25.0/1/media", url.Values{"image_url": {"https://a/1.jpg"}, "caption": {"cap"}, "access_token": {"tok"}})
	id := c["id"].(string)
	get(t, s, "/v25.0/"+id+"?fields=status_code")
	_, m := post(t, s, "/v25.0/1/media_publish", url.Values{"creation_id": {id}, "access_token": {"tok"}})
	_, f := post(t, s, "/v25.0/9/feed", url.Values{"message": {"hello"}, "access_token": {"tok"}})
	post(t, s, "/v25.0/9/photos", url.Values{"url": {"https://a/2.jpg"}, "published": {"false"}, "access_token": {"tok"}})

	if s.PublishedCount("1") != 1 || s.PublishedCount("9") != 1 || len(hooked) != 2 {
		t.Fatalf("counts %d %d, hooked %v", s.PublishedCount("1"), s.PublishedCount("9"), hooked)
	}
	if hooked[0].ID != m["id"] || hooked[0].Text != "cap" || hooked[1].ID != f["id"] || hooked[1].Kind != CallFeed {
		t.Errorf("hooked %+v", hooked)
	}
	_, media := get(t, s, "/v25.0/1/media?fields=id,caption,timestamp")
	data := media["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("media %v", media)
	}
	e := data[0].(map[string]any)
	if e["id"] != m["id"] || e["caption"] != "cap" || e["timestamp"] != "2026-11-28T12:00:00+0000" {
		t.Errorf("media entry %v", e)
	}
	_, posts := get(t, s, "/v25.0/9/published_posts?fields=id,message,created_time")
	if d := posts["data"].([]any); len(d) != 1 || d[0].(map[string]any)["message"] != "hello" || d[0].(map[string]any)["created_time"] != "2026-11-28T12:00:00+0000" {
		t.Errorf("posts %v", posts)
	}
	if _, none := get(t, s, "/v25.0/9/media?fields=id"); len(none["data"].([]any)) != 0 {
		t.Errorf("a Page's Instagram media: %v", none)
	}
}

// A listing pages with cursors, newest first, when more entries follow.
func TestLookupPaging(t *testing.T) {
	s := New()
	defer s.Close()
	s.Token = "tok"
	for _, m := range []string{"a", "b", "c"} {
		post(t, s, "/v25.0/9/feed", url.Values{"message": {m}, "access_token": {"tok"}})
	}
	var got []string
	path := "/v25.0/9/published_posts?fields=id,message&limit=2"
	for page := 0; page < 3 && path != ""; page++ {
		_, out := get(t, s, path)
		for _, e := range out["data"].([]any) {
			got = append(got, e.(map[string]any)["message"].(string))
		}
		path = ""
		if p, ok := out["paging"].(map[string]any); ok {
			after := p["cursors"].(map[string]any)["after"].(string)
			path = "/v25.0/9/published_posts?fields=id,message&limit=2&after=" + after
		}
	}
	if len(got) != 3 || got[0] != "c" || got[1] != "b" || got[2] != "a" {
		t.Errorf("pages gave %v, want [c b a]", got)
	}
}
