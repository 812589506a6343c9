package openai

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, key, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestChatAndImages(t *testing.T) {
	s := New(t, "k")
	resp, body := post(t, s.URL+"/chat/completions", "k", `{"model":"m","messages":[{"role":"user","content":"hi there"}]}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"object":"chat.completion"`) || !strings.Contains(body, `"total_tokens"`) {
		t.Fatalf("chat: %d %s", resp.StatusCode, body)
	}
	resp, body = post(t, s.URL+"/images/generations", "k", `{"prompt":"p","n":2,"response_format":"b64_json"}`)
	var img struct {
		Data []struct {
			B64 string `json:"b64_json"`
		}
	}
	if err := json.Unmarshal([]byte(body), &img); err != nil || resp.StatusCode != 200 || len(img.Data) != 2 || img.Data[0].B64 == "" {
		t.Fatalf("images: %d %s", resp.StatusCode, body)
	}
	if got := len(s.Requests()); got != 2 || s.Calls() != 2 {
		t.Fatalf("recorded %d", got)
	}
	if r := s.Requests()[0]; !r.Authorized || r.Header.Get("Authorization") != "" || r.JSON()["model"] != "m" {
		t.Fatalf("request record: %+v", r)
	}
}

func TestAuthAndValidation(t *testing.T) {
	s := New(t, "k")
	s.FailNext(1, ServerError())
	if resp, body := post(t, s.URL+"/chat/completions", "wrong", `{}`); resp.StatusCode != 401 || !strings.Contains(body, "invalid_api_key") {
		t.Fatalf("auth: %d %s", resp.StatusCode, body)
	}
	// The failure was kept for the next authorized call.
	if resp, _ := post(t, s.URL+"/chat/completions", "k", `{}`); resp.StatusCode != 500 {
		t.Fatalf("want the queued 500, got %d", resp.StatusCode)
	}
	if resp, body := post(t, s.URL+"/chat/completions", "k", `{"messages":[]}`); resp.StatusCode != 400 || !strings.Contains(body, `"param":"model"`) {
		t.Fatalf("validation: %d %s", resp.StatusCode, body)
	}
}

func TestFailNextAndHang(t *testing.T) {
	s := New(t, "k")
	s.FailNext(2, RateLimited("3"))
	for range 2 {
		resp, body := post(t, s.URL+"/images/generations", "k", `{"prompt":"p"}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || !strings.Contains(body, "rate_limit_exceeded") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	s.FailNext(1, Hang())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/chat/completions", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer k")
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("want a timeout")
	}
	resp, body := post(t, s.URL+"/images/generations", "k", `{"prompt":"p"}`)
	if resp.StatusCode != 200 || !strings.Contains(body, `"url"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
