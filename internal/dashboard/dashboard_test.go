package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/dashboard"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const (
	adminToken = "dashboard-test-admin-token-0123456789"
	// secret is the vault type's access token: no page may show it.
	secret = "EAAB-dashboard-very-secret-token-42"
)

// vault has a secret payload field and fails echoing it, as a careless
// provider error would.
type vault struct{}

func (vault) SecretFields() []string { return []string{"accessToken"} }
func (vault) Handle(_ context.Context, job *models.Job) (json.RawMessage, error) {
	var p struct{ AccessToken string }
	_ = json.Unmarshal(job.Payload, &p)
	return nil, errors.New("provider rejected token " + p.AccessToken)
}

// flaky fails until ok is set.
type flaky struct{ ok *atomic.Bool }

func (f flaky) Handle(context.Context, *models.Job) (json.RawMessage, error) {
	if f.ok.Load() {
		return json.RawMessage(`{"done":true}`), nil
	}
	return nil, errors.New("upstream answered 500")
}

// world is one test's engine with the dashboard in front of it.
type world struct {
	t    *testing.T
	eng  *jobs.Engine
	svc  *jobs.Service
	e    *echo.Echo
	ok   *atomic.Bool
	now  *atomic.Int64 // unix seconds the dashboard sees
	cfg  dashboard.Config
	back testenv.Backend
}

func newWorld(t *testing.T, b testenv.Backend, edit func(*dashboard.Config)) *world {
	t.Helper()
	key, err := secretbox.GenerateKey()
	require.NoError(t, err)
	ring, err := secretbox.ParseKeyring(key)
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := &world{t: t, ok: &atomic.Bool{}, now: &atomic.Int64{}, back: b}
	w.now.Store(time.Now().Unix())
	reg := jobs.NewRegistry()
	reg.MustRegister("vault", vault{})
	reg.MustRegister("flaky", flaky{ok: w.ok})
	w.eng = jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log, Secrets: ring, DisableTriggers: true, JobTimeout: 2 * time.Second})
	w.svc = w.eng.Service()
	w.e = handlers.New(handlers.Config{Service: w.svc, Worker: w.eng.Worker(), Verifier: auth.NewHS256Verifier([]byte("x")), WorkerSecret: "worker-secret-worker-secret-00000000", Logger: log})
	sched, err := schedules.Parse([]byte(`{"schedules":[{"name":"drain","cron":"* * * * *","path":"/api/workers"}]}`))
	require.NoError(t, err)
	w.cfg = dashboard.Config{
		Service: w.svc, Depth: w.eng.Depth, AdminToken: adminToken, Schedules: sched, PublicURL: "https://jobs.example.com",
		RetentionCompleted: 7 * 24 * time.Hour, RetentionFailed: 30 * 24 * time.Hour,
		Limiter: ratelimit.New(b.Redis, b.Prefix+"ratelimit:", nil), LoginFailuresPerMinute: 3,
		Now: func() time.Time { return time.Unix(w.now.Load(), 0) }, Logger: log,
	}
	if edit != nil {
		edit(&w.cfg)
	}
	dashboard.Mount(w.e, w.cfg)
	return w
}

// do sends one request; form, when set, is the urlencoded body.
func (w *world) do(method, path string, form url.Values, cookies []*http.Cookie, header ...string) *httptest.ResponseRecorder {
	w.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	w.e.ServeHTTP(rec, req)
	return rec
}

// signIn signs in and returns the session cookie and the CSRF token.
func (w *world) signIn() ([]*http.Cookie, string) {
	w.t.Helper()
	rec := w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}}, nil)
	require.Equal(w.t, http.StatusSeeOther, rec.Code, rec.Body.String())
	cookies := rec.Result().Cookies()
	require.Len(w.t, cookies, 1)
	page := w.do(http.MethodGet, "/dashboard", nil, cookies)
	require.Equal(w.t, http.StatusOK, page.Code, page.Body.String())
	return cookies, csrfOf(w.t, page.Body.String())
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	require.NotNil(t, m, "no CSRF field in the page")
	return m[1]
}

// flashOf follows an action's redirect and returns the page's text.
func (w *world) follow(rec *httptest.ResponseRecorder, cookies []*http.Cookie) string {
	w.t.Helper()
	require.Equal(w.t, http.StatusSeeOther, rec.Code, rec.Body.String())
	page := w.do(http.MethodGet, rec.Header().Get("Location"), nil, append(cookies, rec.Result().Cookies()...))
	require.Equal(w.t, http.StatusOK, page.Code, page.Body.String())
	return html.UnescapeString(page.Body.String())
}

// drain runs the engine's worker until nothing is due.
func (w *world) drain() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := w.eng.Worker().Drain(ctx, 5*time.Second)
	require.NoError(w.t, err)
}

func (w *world) create(user, typ, payload string) *models.Job {
	w.t.Helper()
	job, _, err := w.svc.Create(context.Background(), jobs.CreateRequest{UserID: user, Type: typ, Payload: json.RawMessage(payload), MaxAttempts: 1})
	require.NoError(w.t, err)
	return job
}

func TestOffWithoutAdminToken(t *testing.T) {
	w := newWorld(t, testenv.Embedded(t), func(c *dashboard.Config) { c.AdminToken = "" })
	for _, p := range []string{"/dashboard", "/dashboard/login", "/dashboard/jobs"} {
		rec := w.do(http.MethodGet, p, nil, nil)
		require.Equal(t, http.StatusNotFound, rec.Code, p)
		require.Contains(t, rec.Body.String(), "The dashboard is off")
	}
	rec := w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {""}}, nil)
	require.Equal(t, http.StatusNotFound, rec.Code)
}

func TestSignInAndOut(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		rec := w.do(http.MethodGet, "/dashboard/jobs?status=failed", nil, nil)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.Equal(t, "/dashboard/login?next="+url.QueryEscape("/dashboard/jobs?status=failed"), rec.Header().Get("Location"))

		rec = w.do(http.MethodGet, "/dashboard/login", nil, nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Header().Get("Content-Security-Policy"), "form-action 'self'")
		require.Equal(t, "DENY", rec.Header().Get("X-Frame-Options"))
		require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
		require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))

		rec = w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken + "x"}}, nil)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Contains(t, rec.Body.String(), "That is not the ADMIN_TOKEN")
		require.Empty(t, rec.Result().Cookies())

		rec = w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}, "next": {"/dashboard/jobs?status=failed"}}, nil)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		require.Equal(t, "/dashboard/jobs?status=failed", rec.Header().Get("Location"))
		ck := rec.Result().Cookies()
		require.Len(t, ck, 1)
		c := ck[0]
		require.True(t, c.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, c.SameSite)
		require.Equal(t, "/dashboard", c.Path)
		require.False(t, c.Secure, "not Secure outside production")
		require.Equal(t, int((12 * time.Hour).Seconds()), c.MaxAge)
		require.NotContains(t, c.Value, adminToken)

		rec = w.do(http.MethodGet, "/dashboard", nil, ck)
		require.Equal(t, http.StatusOK, rec.Code)
		csrf := csrfOf(t, rec.Body.String())

		// An open redirect is refused: next stays inside the dashboard.
		for _, next := range []string{"https://evil.example", "//evil.example", "/dashboard/../api/jobs", "/dashboardx"} {
			rec = w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}, "next": {next}}, nil)
			require.Equal(t, "/dashboard", rec.Header().Get("Location"), next)
		}

		// A tampered cookie is no session.
		bad := *c
		bad.Value = strings.Replace(c.Value, "v1.", "v1.9", 1)
		require.Equal(t, http.StatusSeeOther, w.do(http.MethodGet, "/dashboard", nil, []*http.Cookie{&bad}).Code)

		// Sign-out clears the cookie.
		rec = w.do(http.MethodPost, "/dashboard/logout", url.Values{"csrf": {csrf}}, ck)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		var cleared bool
		for _, k := range rec.Result().Cookies() {
			if k.Name == c.Name {
				cleared = k.MaxAge < 0 && k.Value == ""
			}
		}
		require.True(t, cleared, "sign-out clears the session cookie")

		// The session expires after 12 h.
		w.now.Add(int64((12 * time.Hour).Seconds()))
		rec = w.do(http.MethodGet, "/dashboard", nil, ck)
		require.Equal(t, http.StatusSeeOther, rec.Code)
		rec = w.do(http.MethodPost, "/dashboard/types/flaky/pause", url.Values{"csrf": {csrf}}, ck)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	})
}

func TestSecureCookieInProduction(t *testing.T) {
	w := newWorld(t, testenv.Embedded(t), func(c *dashboard.Config) { c.Secure = true })
	rec := w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}}, nil)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	ck := rec.Result().Cookies()
	require.Len(t, ck, 1)
	require.True(t, ck[0].Secure)
	require.True(t, ck[0].HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, ck[0].SameSite)
}

// TestSessionsAcrossInstances: a cookie one instance issued is valid on
// another with the same ADMIN_TOKEN, and on none with another token.
func TestSessionsAcrossInstances(t *testing.T) {
	b := testenv.Embedded(t)
	one := newWorld(t, b, nil)
	ck, _ := one.signIn()
	two := newWorld(t, testenv.Embedded(t), nil)
	require.Equal(t, http.StatusOK, two.do(http.MethodGet, "/dashboard/jobs", nil, ck).Code)
	other := newWorld(t, testenv.Embedded(t), func(c *dashboard.Config) { c.AdminToken = adminToken + "-rotated" })
	require.Equal(t, http.StatusSeeOther, other.do(http.MethodGet, "/dashboard/jobs", nil, ck).Code)
}

func TestFailedSignInsAreLimited(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		for i := 0; i < 3; i++ {
			require.Equal(t, http.StatusUnauthorized, w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {"nope"}}, nil).Code)
		}
		rec := w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}}, nil)
		require.Equal(t, http.StatusTooManyRequests, rec.Code)
		require.NotEmpty(t, rec.Header().Get("Retry-After"))
		require.Contains(t, rec.Body.String(), "too_many_auth_failures")
	})
}

func TestCSRFRefusals(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		ck, csrf := w.signIn()
		ck2, csrf2 := w.signIn()
		require.NotEqual(t, csrf, csrf2, "each session has its own token")
		const path = "/dashboard/types/flaky/pause"
		for name, tc := range map[string]struct {
			form   url.Values
			header []string
		}{
			"no token":            {form: url.Values{}},
			"wrong token":         {form: url.Values{"csrf": {"x" + csrf}}},
			"another session's":   {form: url.Values{"csrf": {csrf2}}},
			"cross-site fetch":    {form: url.Values{"csrf": {csrf}}, header: []string{"Sec-Fetch-Site", "cross-site"}},
			"same-site subdomain": {form: url.Values{"csrf": {csrf}}, header: []string{"Sec-Fetch-Site", "same-site"}},
			"foreign origin":      {form: url.Values{"csrf": {csrf}}, header: []string{"Origin", "https://evil.example"}},
			"null origin":         {form: url.Values{"csrf": {csrf}}, header: []string{"Origin", "null"}},
		} {
			rec := w.do(http.MethodPost, path, tc.form, ck, tc.header...)
			require.Equal(t, http.StatusForbidden, rec.Code, name)
			require.Contains(t, rec.Body.String(), "csrf_refused", name)
		}
		types, err := w.svc.Types(context.Background(), jobs.Operator)
		require.NoError(t, err)
		for _, ts := range types {
			require.False(t, ts.Paused, "a refused POST changed nothing")
		}
		_ = ck2
		rec := w.do(http.MethodPost, path, url.Values{"csrf": {csrf}}, ck, "Sec-Fetch-Site", "same-origin", "Origin", "http://example.com")
		require.Equal(t, http.StatusSeeOther, rec.Code)
		rec = w.do(http.MethodPost, "/dashboard/types/flaky/resume", url.Values{"csrf": {csrf}}, ck, "Origin", "http://example.com")
		require.Equal(t, http.StatusSeeOther, rec.Code, "Origin matching Host passes")
		// Sign-in is checked for its origin too.
		rec = w.do(http.MethodPost, "/dashboard/login", url.Values{"token": {adminToken}}, nil, "Sec-Fetch-Site", "cross-site")
		require.Equal(t, http.StatusForbidden, rec.Code)
	})
}

func TestPagesNeedASession(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		job := w.create("u1", "flaky", `{}`)
		ck, _ := w.signIn()
		for _, p := range []string{"/dashboard", "/dashboard/jobs", "/dashboard/jobs/" + itoa(job.ID), "/dashboard/jobs?status=pending&type=flaky&user=u1"} {
			require.Equal(t, http.StatusSeeOther, w.do(http.MethodGet, p, nil, nil).Code, p)
			rec := w.do(http.MethodGet, p, nil, ck)
			require.Equal(t, http.StatusOK, rec.Code, p+": "+rec.Body.String())
			require.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		}
		for _, p := range []string{"/dashboard/jobs/retry", "/dashboard/jobs/1/retry", "/dashboard/jobs/1/cancel", "/dashboard/types/flaky/pause",
			"/dashboard/types/flaky/resume", "/dashboard/flow-keys/pause", "/dashboard/flow-keys/resume", "/dashboard/logout"} {
			require.Equal(t, http.StatusUnauthorized, w.do(http.MethodPost, p, url.Values{}, nil).Code, p)
		}
		rec := w.do(http.MethodGet, "/dashboard/jobs/999999", nil, ck)
		require.Equal(t, http.StatusNotFound, rec.Code)
		require.Contains(t, rec.Body.String(), "job_not_found")
		rec = w.do(http.MethodGet, "/dashboard/static/dashboard.css", nil, nil)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Header().Get("Content-Type"), "text/css")
	})
}

func TestOverviewShows(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		w.create("u1", "flaky", `{}`)
		w.drain()
		w.create("u1", "flaky", `{}`)
		ck, _ := w.signIn()
		rec := w.do(http.MethodGet, "/dashboard", nil, ck)
		require.Equal(t, http.StatusOK, rec.Code)
		page := rec.Body.String()
		for _, want := range []string{"<svg", `class="bar-failed"`, "https://jobs.example.com/api/workers", "* * * * *", ">7d<", ">30d<", `id="depth"`, `id="type-flaky"`} {
			require.Contains(t, page, want)
		}
	})
}

func TestActions(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		ctx := context.Background()
		job := w.create("u1", "flaky", `{}`)
		w.drain()
		ck, csrf := w.signIn()
		jobPath := "/dashboard/jobs/" + itoa(job.ID)
		page := html.UnescapeString(w.do(http.MethodGet, jobPath, nil, ck).Body.String())
		require.Contains(t, page, "upstream answered 500")
		require.Contains(t, page, `id="retry"`)

		// Cancelling a failed job: the Service's error, readable, with its code.
		page = w.follow(w.do(http.MethodPost, jobPath+"/cancel", url.Values{"csrf": {csrf}}, ck), ck)
		require.Contains(t, page, "job_not_cancellable")

		w.ok.Store(true)
		page = w.follow(w.do(http.MethodPost, jobPath+"/retry", url.Values{"csrf": {csrf}}, ck), ck)
		require.Contains(t, page, "re-queued")
		w.drain()
		got, err := w.svc.Get(ctx, jobs.Operator, job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCompleted, got.Status)
		page = w.follow(w.do(http.MethodPost, jobPath+"/retry", url.Values{"csrf": {csrf}}, ck), ck)
		require.Contains(t, page, "job_not_retryable")

		// Pause and resume a type.
		page = w.follow(w.do(http.MethodPost, "/dashboard/types/flaky/pause", url.Values{"csrf": {csrf}, "reason": {"maintenance"}}, ck), ck)
		require.Contains(t, page, "Job type flaky paused")
		require.Contains(t, page, "maintenance")
		held := w.create("u1", "flaky", `{}`)
		w.drain()
		got, err = w.svc.Get(ctx, jobs.Operator, held.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, got.Status)
		page = html.UnescapeString(w.do(http.MethodGet, "/dashboard/jobs/"+itoa(held.ID), nil, ck).Body.String())
		require.Contains(t, page, `id="waiting-for"`)
		page = w.follow(w.do(http.MethodPost, "/dashboard/types/flaky/resume", url.Values{"csrf": {csrf}}, ck), ck)
		require.Contains(t, page, "Job type flaky resumed")
		page = w.follow(w.do(http.MethodPost, "/dashboard/types/nosuch/pause", url.Values{"csrf": {csrf}}, ck), ck)
		require.Contains(t, page, "unknown_job_type")

		// Pause and resume a flow key.
		page = w.follow(w.do(http.MethodPost, "/dashboard/flow-keys/pause", url.Values{"csrf": {csrf}, "key": {"ig:123"}, "reason": {"quota"}}, ck), ck)
		require.Contains(t, page, "Flow key ig:123 paused")
		require.Contains(t, page, "<code>ig:123</code>")
		page = w.follow(w.do(http.MethodPost, "/dashboard/flow-keys/resume", url.Values{"csrf": {csrf}, "key": {"ig:123"}}, ck), ck)
		require.Contains(t, page, "Flow key ig:123 resumed")
		require.Contains(t, page, "No flow key is paused")
		page = w.follow(w.do(http.MethodPost, "/dashboard/flow-keys/pause", url.Values{"csrf": {csrf}, "key": {""}}, ck), ck)
		require.Contains(t, page, "invalid_flow_key")
	})
}

func TestBulkRetryAndFilters(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		ctx := context.Background()
		a1 := w.create("alice", "flaky", `{}`)
		a2 := w.create("alice", "flaky", `{}`)
		bob := w.create("bob", "flaky", `{}`)
		w.drain()
		ck, csrf := w.signIn()

		list := func(query string) string {
			rec := w.do(http.MethodGet, "/dashboard/jobs"+query, nil, ck)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			return rec.Body.String()
		}
		page := list("?status=failed&user=alice")
		require.Contains(t, page, `id="job-`+itoa(a1.ID)+`"`)
		require.Contains(t, page, `id="job-`+itoa(a2.ID)+`"`)
		require.NotContains(t, page, `id="job-`+itoa(bob.ID)+`"`, "the user filter reaches the Service")
		page = list("?error=UPSTREAM+answered")
		require.Contains(t, page, `id="job-`+itoa(bob.ID)+`"`)
		require.NotContains(t, list("?error=nothing-like-this"), `id="job-`)
		future := time.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04")
		require.NotContains(t, list("?from="+future), `id="job-`, "the time range reaches the Service")
		require.Contains(t, list("?to="+future), `id="job-`+itoa(bob.ID)+`"`)
		rec := w.do(http.MethodGet, "/dashboard/jobs?from=yesterday", nil, ck)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Contains(t, rec.Body.String(), "invalid_time_range")
		rec = w.do(http.MethodGet, "/dashboard/jobs?from="+future+"&to="+future, nil, ck)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Contains(t, rec.Body.String(), "invalid_time_range")
		page = list("?parent=" + itoa(bob.ID))
		require.Contains(t, page, "No job matches.", "the parent filter reaches the Service")
		rec = w.do(http.MethodGet, "/dashboard/jobs?parent=x", nil, ck)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Contains(t, rec.Body.String(), "invalid_parent")
		rec = w.do(http.MethodGet, "/dashboard/jobs?cursor=garbage", nil, ck)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Contains(t, rec.Body.String(), "invalid_cursor")

		w.ok.Store(true)
		rec = w.do(http.MethodPost, "/dashboard/jobs/retry", url.Values{"csrf": {csrf}, "status": {"failed"}, "user": {"alice"}}, ck)
		require.Equal(t, "/dashboard/jobs?status=failed&user=alice", rec.Header().Get("Location"))
		page = w.follow(rec, ck)
		require.Contains(t, page, "Retried 2 job(s).")
		w.drain()
		for _, id := range []int64{a1.ID, a2.ID} {
			got, err := w.svc.Get(ctx, jobs.Operator, id)
			require.NoError(t, err)
			require.Equal(t, models.StatusCompleted, got.Status)
		}
		got, err := w.svc.Get(ctx, jobs.Operator, bob.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusFailed, got.Status, "bob's job was not in the filter")
	})
}

// TestSecretsNeverInPages: a job whose payload carries a secret and whose
// handler fails echoing it: no page, list or flash shows it.
func TestSecretsNeverInPages(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		job := w.create("u1", "vault", `{"accessToken":"`+secret+`"}`)
		w.drain()
		ck, csrf := w.signIn()
		id := itoa(job.ID)
		var pages []string
		for _, p := range []string{"/dashboard", "/dashboard/jobs", "/dashboard/jobs?type=vault", "/dashboard/jobs/" + id} {
			rec := w.do(http.MethodGet, p, nil, ck)
			require.Equal(t, http.StatusOK, rec.Code, p)
			pages = append(pages, rec.Body.String())
		}
		pages = append(pages, w.follow(w.do(http.MethodPost, "/dashboard/jobs/"+id+"/retry", url.Values{"csrf": {csrf}}, ck), ck))
		w.drain()
		pages = append(pages, w.follow(w.do(http.MethodPost, "/dashboard/jobs/retry", url.Values{"csrf": {csrf}, "type": {"vault"}}, ck), ck))
		require.Contains(t, pages[3], "[redacted]")
		for i, p := range pages {
			require.NotContains(t, p, secret, "page %d", i)
			require.NotContains(t, html.UnescapeString(p), secret, "page %d", i)
		}
	})
}

func TestTraceParentHidden(t *testing.T) {
	w := newWorld(t, testenv.Embedded(t), nil)
	job := w.create("u1", "flaky", `{}`)
	ck, _ := w.signIn()
	page := w.do(http.MethodGet, "/dashboard/jobs/"+itoa(job.ID), nil, ck).Body.String()
	require.NotContains(t, page, `id="trace"`, "no trace row while the job has none")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestJobTree: a job's page shows its children and theirs, linked; a
// child's page links its parent.
func TestJobTree(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		w := newWorld(t, b, nil)
		ctx := context.Background()
		parent := w.create("u1", "flaky", `{}`)
		child, err := w.svc.CreateChild(ctx, parent, 0, jobs.ChildSpec{Type: "flaky", MaxAttempts: 1})
		require.NoError(t, err)
		grandchild, err := w.svc.CreateChild(ctx, child, 0, jobs.ChildSpec{Type: "flaky", MaxAttempts: 1})
		require.NoError(t, err)
		ck, _ := w.signIn()
		page := w.do(http.MethodGet, "/dashboard/jobs/"+itoa(parent.ID), nil, ck).Body.String()
		require.Contains(t, page, `<a href="/dashboard/jobs/`+itoa(child.ID)+`">#`+itoa(child.ID)+`</a>`)
		require.Contains(t, page, `<a href="/dashboard/jobs/`+itoa(grandchild.ID)+`">#`+itoa(grandchild.ID)+`</a>`)
		require.Equal(t, 2, strings.Count(page, `<ul class="tree">`), "the grandchild is nested under the child")
		page = w.do(http.MethodGet, "/dashboard/jobs/"+itoa(grandchild.ID), nil, ck).Body.String()
		require.Contains(t, page, `<a href="/dashboard/jobs/`+itoa(child.ID)+`" id="parent">`)
		require.Contains(t, page, "<p>None.</p>", "a leaf has no children")
	})
}
