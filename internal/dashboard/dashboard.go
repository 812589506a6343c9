// Package dashboard is jobhook's operator dashboard at /dashboard:
// server-rendered html/template pages embedded in the binary, plain HTML
// forms for every action (they work without JavaScript), charts drawn as
// inline SVG on the server, and a few lines of JavaScript for
// auto-refresh and confirmations. No build step, no external assets.
//
// # Pages
//
//	GET  /dashboard                   overview: counts, throughput chart, queue depth, pauses, schedules, retention
//	GET  /dashboard/jobs              jobs, newest first: ?status=&type=&user=&parent=&from=&to=&error=&cursor=
//	GET  /dashboard/jobs/:id          one job: payload (secrets redacted), result, error, attempts, children
//	GET  /dashboard/login             the sign-in form (ADMIN_TOKEN)
//	POST /dashboard/login             sign in: a session cookie, 12 h
//	POST /dashboard/logout            sign out
//	POST /dashboard/jobs/:id/retry    retry a failed or cancelled job
//	POST /dashboard/jobs/:id/cancel   cancel an unfinished job
//	POST /dashboard/jobs/retry        retry the failed jobs the posted filter matches
//	POST /dashboard/types/:type/pause, /resume   hold or release a job type
//	POST /dashboard/flow-keys/pause, /resume     hold or release a flow key (form field key)
//	GET  /dashboard/static/:name      the stylesheet and script
//
// # Security
//
// Only the operator signs in, with ADMIN_TOKEN; without one the dashboard
// is off (404). The session cookie is stateless (expiry and nonce, signed
// with HMAC-SHA256 under a key derived from ADMIN_TOKEN), so it is valid
// on every instance; it is HttpOnly, SameSite=Strict, Path=/dashboard and
// Secure in production. Every POST carries a CSRF token bound to the
// session and must come from the same origin (Sec-Fetch-Site, else
// Origin). Failed sign-ins count against a per-address limit. The pages
// read jobs only through jobs.Service, which redacts secret payload
// fields.
package dashboard

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/jobs"
)

// Defaults of Config.
const (
	// DefaultSessionTTL is how long a sign-in lasts.
	DefaultSessionTTL = 12 * time.Hour
	// DefaultLoginFailuresPerMinute is how many failed sign-ins one
	// address may make per minute before it must wait.
	DefaultLoginFailuresPerMinute = 10
	// DefaultRequestTimeout bounds the backend calls of one page.
	DefaultRequestTimeout = 10 * time.Second
)

// Cookie names.
const (
	sessionCookie = "jobhook_dashboard"
	flashCookie   = "jobhook_dashboard_flash"
	basePath      = "/dashboard"
)

// codeCSRFRefused is the code a refused POST's page shows. It is the
// dashboard's own, on an HTML page: handlers.ErrorCodes lists the JSON
// API's codes, and no API response carries this one.
const codeCSRFRefused = "csrf_refused"

// contentSecurityPolicy allows the dashboard's own stylesheet, script and
// forms, and nothing else (inline SVG needs no source).
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Config wires the dashboard to the engine.
type Config struct {
	// Service answers every page and action, as the Operator. Required.
	Service *jobs.Service
	// Depth counts the queue's sets ((*jobs.Engine).Depth). Optional.
	Depth func(ctx context.Context) (jobs.Depth, error)
	// AdminToken is the operator's token, the only sign-in. Empty turns
	// the dashboard off (every page 404).
	AdminToken string
	// Secure marks the cookies Secure (production, behind TLS).
	Secure bool
	// Schedules is the QStash schedules file, shown on the overview; nil
	// shows none.
	Schedules *schedules.File
	// PublicURL completes the schedules' destinations.
	PublicURL string
	// RetentionCompleted and RetentionFailed are shown on the overview:
	// how long finished jobs are kept (0: forever).
	RetentionCompleted, RetentionFailed time.Duration
	// Limiter, when set, counts failed sign-ins per client address; a
	// blocked address is refused (429) until its window ends.
	Limiter *ratelimit.Limiter
	// LoginFailuresPerMinute is the limit of failed sign-ins per address.
	// Defaults to DefaultLoginFailuresPerMinute.
	LoginFailuresPerMinute int
	// SessionTTL defaults to DefaultSessionTTL.
	SessionTTL time.Duration
	// RequestTimeout defaults to DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// dashboard serves the pages.
type dashboard struct {
	cfg      Config
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	failures ratelimit.Failures
}

// Mount adds the dashboard's routes under /dashboard to e. It panics when
// Service is nil (a programming error caught at start).
func Mount(e *echo.Echo, cfg Config) {
	if cfg.Service == nil {
		panic("dashboard: Config.Service is required")
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LoginFailuresPerMinute <= 0 {
		cfg.LoginFailuresPerMinute = DefaultLoginFailuresPerMinute
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &dashboard{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "dashboard"),
		pages:    parsePages(),
		failures: ratelimit.Failures{Limit: cfg.LoginFailuresPerMinute, Window: time.Minute},
	}
	g := e.Group(basePath, d.headers)
	if cfg.AdminToken == "" {
		off := func(c echo.Context) error {
			return d.render(c, http.StatusNotFound, "off", pageData{Title: "Dashboard off"})
		}
		g.GET("", off)
		g.GET("/*", off)
		g.POST("/*", off)
		d.log.Info("dashboard: off (every /dashboard page is 404)", "why", "ADMIN_TOKEN not set")
		return
	}
	d.sessions = newSessions(cfg.AdminToken, cfg.SessionTTL)

	get := func(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		g.GET(path, h, m...)
		g.HEAD(path, h, m...)
	}
	get("/static/:name", d.static)
	get("/login", d.loginForm)
	g.POST("/login", d.login, d.sameOrigin)
	g.POST("/logout", d.logout, d.sameOrigin, d.requireSession, d.checkCSRF)

	get("", d.overview, d.requireSession)
	get("/jobs", d.jobsList, d.requireSession)
	get("/jobs/:id", d.jobDetail, d.requireSession)
	for path, h := range map[string]echo.HandlerFunc{
		"/jobs/retry":         d.bulkRetry,
		"/jobs/:id/retry":     d.retryJob,
		"/jobs/:id/cancel":    d.cancelJob,
		"/types/:type/pause":  d.pauseType,
		"/types/:type/resume": d.resumeType,
		"/flow-keys/pause":    d.pauseFlowKey,
		"/flow-keys/resume":   d.resumeFlowKey,
	} {
		g.POST(path, h, d.sameOrigin, d.requireSession, d.checkCSRF)
	}
	d.log.Info("dashboard: "+basePath+", sign in with ADMIN_TOKEN", "why", "ADMIN_TOKEN set", "secure_cookies", cfg.Secure)
}

// headers sets the dashboard's content security policy (its own assets
// and forms only) over the server's stricter API default, keeps pages out
// of caches, and bounds the request's backend calls.
func (d *dashboard) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		if !strings.HasPrefix(c.Request().URL.Path, basePath+"/static/") {
			h.Set("Cache-Control", "no-store")
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), d.cfg.RequestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// sessionKey is where requireSession stores the session.
const sessionKey = "jobhook.dashboard.session"

// requireSession lets a signed-in browser through; others are sent to
// the sign-in form (GET, 303) or refused (POST, 401).
func (d *dashboard) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if ck, err := c.Cookie(sessionCookie); err == nil {
			if sess, ok := d.sessions.parse(ck.Value, d.cfg.Now()); ok {
				c.Set(sessionKey, sess)
				return next(c)
			}
		}
		req := c.Request()
		if req.Method == http.MethodGet || req.Method == http.MethodHead {
			return c.Redirect(http.StatusSeeOther, basePath+"/login?next="+url.QueryEscape(req.URL.RequestURI()))
		}
		return d.render(c, http.StatusUnauthorized, "login", pageData{Title: "Sign in",
			Flash: &flash{Kind: "error", Message: "Your session has ended: sign in again."}})
	}
}

// sessionOf returns the session requireSession found.
func sessionOf(c echo.Context) (session, bool) {
	s, ok := c.Get(sessionKey).(session)
	return s, ok
}

// sameOrigin refuses a POST another site sent: Sec-Fetch-Site must be
// same-origin when the browser sends it, else an Origin, when present,
// must be this server's. (Referrer-Policy no-referrer makes browsers send
// "Origin: null" on forms, so Sec-Fetch-Site is the main check; the CSRF
// token is the defence that does not depend on the browser.)
func (d *dashboard) sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if site := req.Header.Get("Sec-Fetch-Site"); site != "" {
			if site != "same-origin" {
				return d.forbidden(c, "the request came from another site ("+site+")")
			}
			return next(c)
		}
		if origin := req.Header.Get(echo.HeaderOrigin); origin != "" {
			u, err := url.Parse(origin)
			if err != nil || origin == "null" || !strings.EqualFold(u.Host, req.Host) {
				return d.forbidden(c, "the request came from another origin")
			}
		}
		return next(c)
	}
}

// checkCSRF refuses a POST whose csrf field is not the session's token.
func (d *dashboard) checkCSRF(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		sess, ok := sessionOf(c)
		if !ok || !d.sessions.checkCSRF(sess, c.FormValue("csrf")) {
			return d.forbidden(c, "the form's CSRF token is missing or not this session's: reload the page and try again")
		}
		return next(c)
	}
}

func (d *dashboard) forbidden(c echo.Context, why string) error {
	return d.render(c, http.StatusForbidden, "error", pageData{Title: "Forbidden",
		Flash: &flash{Kind: "error", Code: codeCSRFRefused, Message: "Refused: " + why + "."}})
}

// loginForm shows the sign-in form, or goes on when already signed in.
func (d *dashboard) loginForm(c echo.Context) error {
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if _, ok := d.sessions.parse(ck.Value, d.cfg.Now()); ok {
			return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
		}
	}
	return d.render(c, http.StatusOK, "login", pageData{Title: "Sign in", Next: safeNext(c.QueryParam("next")), Flash: takeFlash(c)})
}

// login checks the submitted ADMIN_TOKEN and sets the session cookie.
func (d *dashboard) login(c echo.Context) error {
	ctx := c.Request().Context()
	client := "dashboard-login:" + c.RealIP()
	next := safeNext(c.FormValue("next"))
	if d.cfg.Limiter != nil {
		blocked, wait, err := d.cfg.Limiter.Blocked(ctx, client, d.failures)
		if err != nil {
			d.log.Warn("sign-in failure limit not checked", "err", err)
		}
		if blocked {
			c.Response().Header().Set("Retry-After", retryAfter(wait))
			return d.render(c, http.StatusTooManyRequests, "login", pageData{Title: "Sign in", Next: next,
				Flash: &flash{Kind: "error", Code: handlers.CodeTooManyAuthFailures, Message: "Too many failed sign-ins from your address: try again in " + retryAfter(wait) + " s."}})
		}
	}
	if !d.sessions.checkToken(c.FormValue("token")) {
		if d.cfg.Limiter != nil {
			if err := d.cfg.Limiter.Fail(ctx, client, d.failures); err != nil {
				d.log.Warn("failed sign-in not counted", "err", err)
			}
		}
		d.log.Warn("dashboard sign-in refused", "remote_ip", c.RealIP())
		return d.render(c, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Next: next,
			Flash: &flash{Kind: "error", Code: handlers.CodeInvalidToken, Message: "That is not the ADMIN_TOKEN."}})
	}
	_, value, err := d.sessions.issue(d.cfg.Now())
	if err != nil {
		return err
	}
	c.SetCookie(d.cookie(sessionCookie, value, int(d.cfg.SessionTTL.Seconds())))
	d.log.Info("dashboard sign-in", "remote_ip", c.RealIP())
	return c.Redirect(http.StatusSeeOther, next)
}

// logout clears the session cookie. Sessions are stateless: a copy of the
// cookie stays valid until it expires (changing ADMIN_TOKEN ends them all).
func (d *dashboard) logout(c echo.Context) error {
	c.SetCookie(d.cookie(sessionCookie, "", -1))
	setFlash(c, d, flash{Kind: "ok", Message: "Signed out."})
	return c.Redirect(http.StatusSeeOther, basePath+"/login")
}

// cookie is one of the dashboard's cookies: HttpOnly, SameSite=Strict,
// Path=/dashboard, Secure when configured. maxAge < 0 deletes it.
func (d *dashboard) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: basePath, MaxAge: maxAge,
		HttpOnly: true, Secure: d.cfg.Secure, SameSite: http.SameSiteStrictMode,
	}
}

// safeNext keeps a post-sign-in destination inside the dashboard: a
// clean absolute path under /dashboard (no scheme, host, dot segments or
// backslashes), never the sign-in form itself.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || strings.Contains(next, `\`) ||
		path.Clean(u.Path) != u.Path || strings.HasPrefix(next, "//") {
		return basePath
	}
	if u.Path != basePath && (!strings.HasPrefix(u.Path, basePath+"/") || strings.HasPrefix(u.Path, basePath+"/login")) {
		return basePath
	}
	return next
}

func retryAfter(d time.Duration) string {
	s := int(d.Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return itoa(int64(s))
}

// static serves the embedded stylesheet and script.
func (d *dashboard) static(c echo.Context) error {
	name := c.Param("name")
	data, err := fs.ReadFile(staticFiles, "static/"+name)
	if err != nil || strings.Contains(name, "/") {
		return echo.ErrNotFound
	}
	ctype := "text/css; charset=utf-8"
	if strings.HasSuffix(name, ".js") {
		ctype = "text/javascript; charset=utf-8"
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=3600")
	return c.Blob(http.StatusOK, ctype, data)
}
