package graph

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// call sends a request with token tok and returns the status, the headers
// and the decoded body.
func call(t *testing.T, s *Server, method, path string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		form = cloneValues(form)
		form.Set("access_token", "tok")
		req, _ = http.NewRequest(method, s.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req, _ = http.NewRequest(method, s.URL+path+"?"+form.Encode(), nil)
		req.Header.Set("Authorization", "Bearer tok")
	}
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func TestUsageHeadersPerAccount(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetUsage("111", Usage{CallCount: 97, TotalTime: 12, EstimatedTimeToRegainAccess: 2})
	s.SetAppUsage(&AppUsage{CallCount: 40, TotalCPUTime: 41, TotalTime: 42})
	_, h, out := call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}})
	var buc map[string][]map[string]any
	if err := json.Unmarshal([]byte(h.Get("X-Business-Use-Case-Usage")), &buc); err != nil {
		t.Fatalf("BUC header %q: %v", h.Get("X-Business-Use-Case-Usage"), err)
	}
	e := buc["111"]
	if len(e) != 1 || e[0]["type"] != "instagram" || e[0]["call_count"] != 97.0 || e[0]["estimated_time_to_regain_access"] != 2.0 {
		t.Errorf("BUC %v", buc)
	}
	if got := h.Get("X-App-Usage"); got != `{"call_count":40,"total_cputime":41,"total_time":42}` {
		t.Errorf("app usage %q", got)
	}
	// The container's status is about its account.
	_, h, _ = call(t, s, http.MethodGet, "/v25.0/"+out["id"].(string), url.Values{"fields": {"status_code"}})
	if !strings.Contains(h.Get("X-Business-Use-Case-Usage"), `"111"`) {
		t.Errorf("status answer lacks the account's usage: %v", h)
	}
	// Another account has none.
	_, h, _ = call(t, s, http.MethodPost, "/v25.0/222/media", url.Values{"image_url": {"https://x/a.jpg"}})
	if h.Get("X-Business-Use-Case-Usage") != "" {
		t.Errorf("account 222 got %q", h.Get("X-Business-Use-Case-Usage"))
	}
	s.SetRawUsageHeaders(http.Header{"X-App-Usage": {"garbage"}})
	if _, h, _ = call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}}); h.Get("X-App-Usage") != "garbage" || h.Get("X-Business-Use-Case-Usage") != "" {
		t.Errorf("raw headers %v", h)
	}
}

func TestThrottleNext(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetUsage("111", Usage{CallCount: 100, EstimatedTimeToRegainAccess: 3})
	s.ThrottleNext("111", 2, CodeInstagramThrottled, 0)
	for i := range 2 {
		status, h, out := call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}})
		e, _ := out["error"].(map[string]any)
		if status != http.StatusBadRequest || e["code"] != float64(CodeInstagramThrottled) || h.Get("X-Business-Use-Case-Usage") == "" {
			t.Fatalf("call %d: %d %v %v", i, status, out, h)
		}
	}
	if status, _, _ := call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}}); status != http.StatusOK {
		t.Errorf("third call %d", status)
	}
	s.ThrottleNext("111", -1, CodeAppLimit, 0)
	for range 3 {
		if status, _, _ := call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}}); status != http.StatusBadRequest {
			t.Fatalf("status %d while throttled until cleared", status)
		}
	}
	if status, _, _ := call(t, s, http.MethodPost, "/v25.0/222/media", url.Values{"image_url": {"https://x/a.jpg"}}); status != http.StatusOK {
		t.Errorf("another account was throttled: %d", status)
	}
	s.Unthrottle("111")
	if status, _, _ := call(t, s, http.MethodPost, "/v25.0/111/media", url.Values{"image_url": {"https://x/a.jpg"}}); status != http.StatusOK {
		t.Errorf("after Unthrottle %d", status)
	}
}

func TestPublishingLimitPerAccount(t *testing.T) {
	s := New()
	defer s.Close()
	limit := func(acct string) (float64, float64) {
		_, _, out := call(t, s, http.MethodGet, "/v25.0/"+acct+"/content_publishing_limit", url.Values{"fields": {"config,quota_usage"}})
		d := out["data"].([]any)[0].(map[string]any)
		return d["quota_usage"].(float64), d["config"].(map[string]any)["quota_total"].(float64)
	}
	publish := func(acct string) (int, map[string]any) {
		_, _, c := call(t, s, http.MethodPost, "/v25.0/"+acct+"/media", url.Values{"image_url": {"https://x/a.jpg"}})
		call(t, s, http.MethodGet, "/v25.0/"+c["id"].(string), nil)
		status, _, out := call(t, s, http.MethodPost, "/v25.0/"+acct+"/media_publish", url.Values{"creation_id": {c["id"].(string)}})
		return status, out
	}
	if u, tot := limit("111"); u != 0 || tot != DefaultQuotaTotal {
		t.Fatalf("default limit %v/%v", u, tot)
	}
	s.SetPublishingLimit("111", 1, 2)
	if status, _ := publish("111"); status != http.StatusOK {
		t.Fatalf("publish under the quota: %d", status)
	}
	if u, tot := limit("111"); u != 2 || tot != 2 {
		t.Errorf("limit %v/%v, want 2/2", u, tot)
	}
	status, out := publish("111")
	e, _ := out["error"].(map[string]any)
	if status != http.StatusBadRequest || e["error_subcode"] != float64(SubcodePublishingLimit) {
		t.Errorf("publish over the quota: %d %v", status, out)
	}
	if u, _ := limit("222"); u != 0 {
		t.Errorf("account 222 counts 111's posts: %v", u)
	}
}
