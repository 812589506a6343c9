package dashboard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/jobs"
)

// pageNames are the templates, each parsed with layout.html.
var pageNames = []string{"login", "off", "error", "overview", "jobs", "job"}

// funcs are the helpers the templates use.
var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return fmt.Sprint(t)
	},
	"duration": formatDuration,
	"short": func(s string, n int) string {
		r := []rune(s)
		if len(r) <= n {
			return s
		}
		return string(r[:n]) + "…"
	},
}

func parsePages() map[string]*template.Template {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// pageData is what every page gets; Page holds the page's own view.
type pageData struct {
	Title string
	// Nav is the current section, for the menu.
	Nav string
	// CSRF is the session's token for the page's forms; empty when
	// signed out.
	CSRF  string
	Flash *flash
	// Next is where the sign-in form goes after success.
	Next string
	Now  time.Time
	Page any
}

// flash is a message shown once, after an action's redirect.
type flash struct {
	// Kind is "ok" or "error".
	Kind    string `json:"k"`
	Code    string `json:"c,omitempty"`
	Message string `json:"m"`
}

// render writes page name with status. The session's CSRF token is added
// when signed in.
func (d *dashboard) render(c echo.Context, status int, name string, data pageData) error {
	t, ok := d.pages[name]
	if !ok {
		return fmt.Errorf("dashboard: no page %q", name)
	}
	if sess, ok := sessionOf(c); ok && d.sessions != nil {
		data.CSRF = d.sessions.csrfToken(sess)
	}
	data.Now = d.cfg.Now().UTC()
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return fmt.Errorf("dashboard: render %s: %w", name, err)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// setFlash keeps a message for the next page.
func setFlash(c echo.Context, d *dashboard, f flash) {
	raw, _ := json.Marshal(f)
	c.SetCookie(d.cookie(flashCookie, base64.RawURLEncoding.EncodeToString(raw), 60))
}

// takeFlash reads and clears the message an action left, if any.
func takeFlash(c echo.Context) *flash {
	ck, err := c.Cookie(flashCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	c.SetCookie(&http.Cookie{Name: flashCookie, Value: "", Path: basePath, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: ck.Secure})
	raw, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil {
		return nil
	}
	var f flash
	if json.Unmarshal(raw, &f) != nil || f.Message == "" {
		return nil
	}
	return &f
}

// describeError turns a Service error into a stable code, a status and a
// readable message. Unexpected errors are logged and shown as
// internal_error without their details.
func (d *dashboard) describeError(err error) (code string, status int, message string) {
	var ve *jobs.ValidationError
	switch {
	case errors.As(err, &ve):
		return ve.Code, http.StatusBadRequest, ve.Message
	case errors.Is(err, jobs.ErrNotFound):
		return handlers.CodeJobNotFound, http.StatusNotFound, "job not found"
	case errors.Is(err, jobs.ErrNotCancellable):
		return handlers.CodeJobNotCancellable, http.StatusConflict, "only an unfinished job (pending, scheduled or processing) can be cancelled: " + err.Error()
	case errors.Is(err, jobs.ErrNotRetryable):
		return handlers.CodeJobNotRetryable, http.StatusConflict, "only a failed or cancelled job can be retried"
	case errors.Is(err, jobs.ErrOperatorOnly):
		return handlers.CodeOperatorOnly, http.StatusForbidden, "only an operator may do this"
	case errors.Is(err, jobs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		d.log.Warn("dashboard: backend unavailable", "err", err)
		return handlers.CodeServiceUnavailable, http.StatusServiceUnavailable, "the database or Redis did not answer; try again shortly"
	}
	d.log.Error("dashboard: unexpected error", "err", err)
	return handlers.CodeInternalError, http.StatusInternalServerError, "internal error (details are in the server log)"
}

// errorPage renders a Service error as a page.
func (d *dashboard) errorPage(c echo.Context, err error) error {
	code, status, msg := d.describeError(err)
	return d.render(c, status, "error", pageData{Title: "Error", Flash: &flash{Kind: "error", Code: code, Message: msg}})
}

// formatDuration writes d briefly: "7d", "36h", "90s", "forever" for 0.
func formatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return itoa(int64(d/(24*time.Hour))) + "d"
	case d%time.Hour == 0:
		return itoa(int64(d/time.Hour)) + "h"
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
