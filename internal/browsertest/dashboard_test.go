package browsertest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// stepTimeout bounds each browser step.
const stepTimeout = 30 * time.Second

// secretToken is the Facebook access token of the secret job: no page
// may ever contain it.
const secretToken = "EAAB-browser-test-secret-token-9f8e7d"

// upstream is the pages web_scraping fetches (each 500 until switched to
// healthy) and a Graph API that refuses every call, echoing the token.
type upstream struct {
	mu      sync.Mutex
	healthy map[string]bool
	srv     *httptest.Server
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{healthy: map[string]bool{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/robots.txt":
			http.NotFound(w, r)
		case strings.HasPrefix(r.URL.Path, "/page/"):
			name := strings.TrimPrefix(r.URL.Path, "/page/")
			u.mu.Lock()
			ok := u.healthy[name]
			u.mu.Unlock()
			if !ok {
				http.Error(w, "upstream down", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<html><head><title>page %s</title></head><body><h1>%s</h1></body></html>", name, name)
		default: // the Graph API
			_ = r.ParseForm()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"message":"Invalid OAuth access token %s","type":"OAuthException","code":190}}`, r.Form.Get("access_token"))
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) page(name string) string { return u.srv.URL + "/page/" + name }

func (u *upstream) heal(name string) {
	u.mu.Lock()
	u.healthy[name] = true
	u.mu.Unlock()
}

// browser is one headless Chromium tab on the dashboard.
type browser struct {
	t     *testing.T
	ctx   context.Context
	srv   *server
	shots string
	// pages counts the screenshots, to name them in order.
	pages int
}

func newBrowser(t *testing.T, path string, srv *server) *browser {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(cancel)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	b := &browser{t: t, ctx: ctx, srv: srv, shots: screenshotDir(t)}
	// The first run starts the browser, whose life is ctx's: not a
	// context with a timeout, which would end it.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("browsertest: start Chromium: %v", err)
	}
	// Accept the confirm() of the forms that ask.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return b
}

// screenshotDir is $JOBHOOK_ARTIFACTS_DIR/screenshots, or a temporary one.
func screenshotDir(t *testing.T) string {
	dir := t.TempDir()
	if base := os.Getenv(envArtDir); base != "" {
		dir = filepath.Join(base, "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("browsertest: %v", err)
	}
	return dir
}

// do runs steps within stepTimeout.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browsertest: browser step: %v", err)
	}
}

// open loads a dashboard path and waits for its page.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.srv.url+path), chromedp.WaitReady(chromedp.CSS("footer")))
}

// submit clicks sel and waits until the page it leads to has loaded: the
// old page is marked, and the new one has no mark. (A poll inside the
// page would die with the navigation.)
func (b *browser) submit(sel string) {
	b.t.Helper()
	b.do(
		chromedp.Evaluate[chromedp.Void](`document.body.dataset.left = "1"`),
		chromedp.Click(chromedp.CSS(sel)),
	)
	deadline := time.Now().Add(stepTimeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
			`document.readyState === "complete" && !!document.body && !document.body.dataset.left && !!document.querySelector("footer")`))
		cancel()
		if err == nil && loaded {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browsertest: no new page within %s after clicking %s (last error: %v)", stepTimeout, sel, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// text returns the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browsertest: text of %s: %v", sel, err)
	}
	return s
}

// html is the page's whole HTML.
func (b *browser) html() string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		b.t.Fatalf("browsertest: page HTML: %v", err)
	}
	return s
}

// see fails unless the page's text (sel's) contains want.
func (b *browser) see(sel, want string) {
	b.t.Helper()
	if got := b.text(sel); !strings.Contains(got, want) {
		b.t.Fatalf("browsertest: %s does not say %q:\n%s", sel, want, got)
	}
}

// shot saves a PNG of the whole page, and checks the page holds no secret.
func (b *browser) shot(name string) {
	b.t.Helper()
	if strings.Contains(b.html(), secretToken) {
		b.t.Fatalf("browsertest: the secret token is in the HTML of %s", name)
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("browsertest: screenshot %s: %v", name, err)
	}
	b.pages++
	file := filepath.Join(b.shots, fmt.Sprintf("%s-%02d-%s.png", b.srv.backend, b.pages, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatalf("browsertest: %v", err)
	}
	b.t.Logf("screenshot %s", file)
}

// reloadUntil reloads path until sel's text contains want, for 30 s.
func (b *browser) reloadUntil(path, sel, want string) {
	b.t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for {
		b.open(path)
		if strings.Contains(b.text(sel), want) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("browsertest: %s: %s does not say %q within %s: %q", path, sel, want, stepTimeout, b.text(sel))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardInBrowser walks the dashboard as an operator would, in
// headless Chromium against a real `jobhook serve`.
func TestDashboardInBrowser(t *testing.T) {
	path := requireBrowser(t)
	up := newUpstream(t)
	srv := startServe(t, "GRAPH_API_BASE_URL="+up.srv.URL)
	b := newBrowser(t, path, srv)

	// A job carrying a secret, failing with it echoed by the provider:
	// every page below is checked not to hold it (see shot).
	secretJob := srv.createJob("secret-user", "social_publish_facebook",
		map[string]any{"pageId": "1234", "accessToken": secretToken, "message": "hello"})
	srv.waitStatus("failed", secretJob)

	t.Run("sign-in", func(t *testing.T) {
		b.t = t
		b.open("/dashboard")
		b.see("h1", "Sign in")
		b.do(chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"))
		b.submit("#sign-in")
		b.see("#flash", "That is not the ADMIN_TOKEN")
		b.shot("login-refused")
		b.do(chromedp.SendKeys(chromedp.CSS("#token"), srv.adminToken))
		b.submit("#sign-in")
		b.see("h1", "Overview")
	})
	if t.Failed() {
		return
	}

	t.Run("secret-redacted", func(t *testing.T) {
		b.t = t
		b.open(fmt.Sprintf("/dashboard/jobs/%d", secretJob))
		b.see("#job-status", "failed")
		b.see("#payload", "[redacted]")
		b.shot("job-secret-redacted")
		b.open("/dashboard/jobs?type=social_publish_facebook")
		b.shot("jobs-secret-type")
	})

	t.Run("retry", func(t *testing.T) {
		b.t = t
		name := "retry-" + randomHex(4)
		id := srv.createJob("retry-user", "web_scraping", map[string]any{"url": up.page(name)})
		srv.waitStatus("failed", id)
		b.open("/dashboard")
		b.see("#counts", "web_scraping")
		b.shot("overview-failed")
		b.open("/dashboard/jobs?status=failed&type=web_scraping")
		b.submit(fmt.Sprintf("#job-%d a", id))
		b.see("#job-status", "failed")
		b.see("#error", "500")
		b.see("#attempts", "failed")
		b.shot("job-failed")
		up.heal(name)
		b.submit("#retry")
		b.see("#flash", "re-queued")
		b.reloadUntil(fmt.Sprintf("/dashboard/jobs/%d", id), "#job-status", "completed")
		b.see("#result", "page "+name)
		b.see("#attempts", "completed")
		b.shot("job-retried-completed")
	})

	t.Run("bulk-retry", func(t *testing.T) {
		b.t = t
		name := "bulk-" + randomHex(4)
		user := "bulk-" + randomHex(4)
		var ids []int64
		for i := 0; i < 3; i++ {
			ids = append(ids, srv.createJob(user, "web_scraping", map[string]any{"url": up.page(name)}))
		}
		other := srv.createJob("bulk-other", "web_scraping", map[string]any{"url": up.page(name)})
		srv.waitStatus("failed", append(ids, other)...)
		b.open("/dashboard/jobs")
		b.do(chromedp.SetValue(chromedp.CSS("#f-status"), "failed"), chromedp.SendKeys(chromedp.CSS("#f-user"), user))
		b.submit("#apply-filter")
		for _, id := range ids {
			b.see(fmt.Sprintf("#job-%d", id), "failed")
		}
		if strings.Contains(b.html(), fmt.Sprintf(`id="job-%d"`, other)) {
			t.Fatalf("browsertest: the user filter lists another user's job %d", other)
		}
		b.shot("jobs-filtered-failed")
		up.heal(name)
		b.submit("#bulk-retry button")
		b.see("#flash", "Retried 3 job(s).")
		b.shot("jobs-bulk-retried")
		srv.waitStatus("completed", ids...)
		if j := srv.job(other); j.Status != "failed" {
			t.Fatalf("browsertest: job %d outside the filter is %s, want failed", other, j.Status)
		}
	})

	t.Run("pause-type", func(t *testing.T) {
		b.t = t
		name := "pause-" + randomHex(4)
		up.heal(name)
		b.open("/dashboard")
		b.do(chromedp.SendKeys(chromedp.CSS("#type-web_scraping input[name=reason]"), "browser test"))
		b.submit("#type-web_scraping button.pause-type")
		b.see("#flash", "web_scraping paused")
		b.see("#type-web_scraping", "paused")
		b.shot("overview-type-paused")
		ids := []int64{
			srv.createJob("pause-user", "web_scraping", map[string]any{"url": up.page(name)}),
			srv.createJob("pause-user", "web_scraping", map[string]any{"url": up.page(name)}),
		}
		srv.waitJob("held", func(j jobView) bool {
			return j.Status == "pending" && j.Attempts == 0 && len(j.WaitingFor) > 0 && string(j.WaitingFor) != "null"
		}, ids...)
		b.open("/dashboard/jobs?type=web_scraping&status=pending")
		for _, id := range ids {
			b.see(fmt.Sprintf("#job-%d", id), "pending")
			b.see(fmt.Sprintf("#job-%d", id), "waiting")
		}
		b.shot("jobs-paused-waiting")
		b.open(fmt.Sprintf("/dashboard/jobs/%d", ids[0]))
		b.see("#waiting-for", "paused by an operator")
		b.open("/dashboard")
		b.submit("#type-web_scraping button.resume-type")
		b.see("#flash", "web_scraping resumed")
		srv.waitStatus("completed", ids...)
	})

	t.Run("csrf", func(t *testing.T) {
		b.t = t
		b.open("/dashboard")
		// The form without its token.
		b.do(
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#pause-key input[name=csrf]").remove()`),
			chromedp.SendKeys(chromedp.CSS("#pause-key input[name=key]"), "ig:csrf-test"),
		)
		b.submit("#pause-key button")
		b.see("#flash", "csrf_refused")
		b.shot("csrf-refused")
		ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
		defer cancel()
		// The content security policy stops a script's own requests.
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](
			`fetch("/dashboard/types/web_scraping/pause", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise)); err == nil {
			t.Fatal("browsertest: a script's fetch was let through the content security policy")
		}
		// The session cookie as the browser keeps it, then a POST with it
		// but without the token, and one with the token from another site.
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{srv.url + "/dashboard"}})
		if err != nil {
			t.Fatalf("browsertest: cookies: %v", err)
		}
		var session *network.Cookie
		for _, c := range res.Cookies {
			if c.Name == "jobhook_dashboard" {
				session = c
			}
		}
		if session == nil || !session.HTTPOnly || session.SameSite != network.CookieSameSiteStrict || session.Path != "/dashboard" {
			t.Fatalf("browsertest: session cookie %+v, want HttpOnly, SameSite=Strict, Path=/dashboard", session)
		}
		csrf, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`header input[name=csrf]`)))
		if err != nil {
			t.Fatalf("browsertest: csrf field: %v", err)
		}
		for _, tc := range []struct{ name, body, site string }{
			{"no token", "reason=x", ""},
			{"cross-site", "reason=x&csrf=" + csrf, "cross-site"},
		} {
			req, _ := http.NewRequest(http.MethodPost, srv.url+"/dashboard/types/web_scraping/pause", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: session.Name, Value: session.Value})
			if tc.site != "" {
				req.Header.Set("Sec-Fetch-Site", tc.site)
			}
			resp, err := srv.client.Do(req)
			if err != nil {
				t.Fatalf("browsertest: POST: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("browsertest: %s: a POST answered %d, want 403", tc.name, resp.StatusCode)
			}
		}
		b.open("/dashboard")
		b.see("#type-web_scraping", "running")
		b.see("#flow-keys", "No flow key is paused")
	})

	t.Run("sign-out", func(t *testing.T) {
		b.t = t
		b.open("/dashboard")
		b.submit("header .logout button")
		b.see("#flash", "Signed out")
		b.open("/dashboard/jobs")
		b.see("h1", "Sign in")
	})
}
