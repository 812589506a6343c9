package graph

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, s *Server, path string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().Post(s.URL+path, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func get(t *testing.T, s *Server, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestPublishFlowAndDuplicateDetection(t *testing.T) {
	s := New()
	defer s.Close()
	s.Token = "tok"
	s.SetInProgressPolls(1)
	code, c := post(t, s, "/v25.0/1/media", url.Values{"image_url": {"https://a/1.jpg"}, "caption": {"x"}, "access_token": {"tok"}})
	if code != 200 {
		t.Fatalf("create: %d %v", code, c)
	}
	id := c["id"].(string)
	code, e := post(t, s, "/v25.0/1/media_publish", url.Values{"creation_id": {id}, "access_token": {"tok"}})
	if code != 400 || e["error"].(map[string]any)["error_subcode"].(float64) != 2207027 {
		t.Fatalf("publish before FINISHED: %d %v", code, e)
	}
	for _, want := range []string{"IN_PROGRESS", "FINISHED"} {
		if _, st := get(t, s, "/v25.0/"+id+"?fields=status_code,status"); st["status_code"] != want {
			t.Fatalf("status %v, want %s", st, want)
		}
	}
	if code, _ := post(t, s, "/v25.0/1/media_publish", url.Values{"creation_id": {id}, "access_token": {"tok"}}); code != 200 {
		t.Fatalf("publish: %d", code)
	}
	if code, _ := post(t, s, "/v25.0/1/media_publish", url.Values{"creation_id": {id}, "access_token": {"tok"}}); code != 400 {
		t.Fatalf("second publish: %d", code)
	}
	if s.DuplicatePublishes() != 1 || s.Publishes()[id] != 1 || s.Calls(CallPublish) != 3 {
		t.Errorf("duplicates %d publishes %v calls %d", s.DuplicatePublishes(), s.Publishes(), s.Calls(CallPublish))
	}
	if _, st := get(t, s, "/v25.0/"+id+"?fields=status_code"); st["status_code"] != "PUBLISHED" {
		t.Errorf("status after publish %v", st)
	}
	if r := s.RequestsOf(CallCreateContainer)[0]; r.Token != "tok" || r.Form.Has("access_token") || r.Form.Get("caption") != "x" {
		t.Errorf("recorded %+v", r)
	}
}

func TestWrongTokenAndFailures(t *testing.T) {
	s := New()
	defer s.Close()
	s.Token = "tok"
	code, e := post(t, s, "/v25.0/1/feed", url.Values{"message": {"m"}, "access_token": {"bad"}})
	if code != 400 || e["error"].(map[string]any)["code"].(float64) != 190 {
		t.Fatalf("bad token: %d %v", code, e)
	}
	s.FailNextGraph(2, 0, 32, 0, "throttled", false)
	for range 2 {
		if code, _ := post(t, s, "/v25.0/1/feed", url.Values{"message": {"m"}, "access_token": {"tok"}}); code != 400 {
			t.Fatalf("want failure, got %d", code)
		}
	}
	if code, out := post(t, s, "/v25.0/1/feed", url.Values{"message": {"m"}, "access_token": {"tok"}}); code != 200 || !strings.HasPrefix(out["id"].(string), "1_") {
		t.Fatalf("feed: %d %v", code, out)
	}
	resp, err := s.Client().Post(s.URL+"/v25.0/1/feed", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("JSON body accepted: %d", resp.StatusCode)
	}
}

func TestHangReleasedByClient(t *testing.T) {
	s := New()
	defer s.Close()
	s.HangNext(1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/v25.0/1?fields=status_code", nil)
	if _, err := s.Client().Do(req); err == nil {
		t.Fatal("want a timeout")
	}
}

// TestDropAnswer: the call takes effect (the post exists) but the client
// gets a connection error instead of an answer; the next call is answered.
func TestDropAnswer(t *testing.T) {
	s := New()
	defer s.Close()
	s.DropAnswerNextOf(CallFeed, 1)
	resp, err := s.Client().Post(s.URL+"/v25.0/1/feed", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"message": {"hi"}, "access_token": {"tok"}}.Encode()))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want a connection error", resp.StatusCode)
	}
	if n := len(s.Posts()); n != 1 {
		t.Fatalf("%d posts, want 1: the call took effect", n)
	}
	if code, _ := post(t, s, "/v25.0/1/feed", url.Values{"message": {"again"}, "access_token": {"tok"}}); code != http.StatusOK {
		t.Fatalf("second call: %d", code)
	}
}
