package handlers

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// HealthResponse is the body of GET /healthz.
type HealthResponse struct {
	Status string `json:"status"`
}

// ReadyResponse is the body of GET /readyz: "ok" or "error: …" per
// dependency. When one failed it is sent with 503 and Error set.
type ReadyResponse struct {
	Status string            `json:"status,omitempty"`
	Error  *APIError         `json:"error,omitempty"`
	Checks map[string]string `json:"checks"`
}

// healthz serves GET /healthz: the process is up and serving.
func (s *server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, HealthResponse{Status: "ok"})
}

// readyz serves GET /readyz: 200 when every dependency answers within
// ReadyTimeout, else 503 not_ready. A failed check reads "error:
// unreachable" or "error: timed out"; its cause (which may hold a host
// name or a DSN) is only logged.
func (s *server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.ReadyTimeout)
	defer cancel()
	results := s.cfg.Ready(ctx)
	names := make([]string, 0, len(results))
	for name := range results {
		names = append(names, name)
	}
	slices.Sort(names)
	resp := ReadyResponse{Status: "ready", Checks: make(map[string]string, len(results))}
	var failed []string
	for _, name := range names {
		err := results[name]
		switch {
		case err == nil:
			resp.Checks[name] = "ok"
			continue
		case errors.Is(err, context.DeadlineExceeded):
			resp.Checks[name] = "error: timed out"
		default:
			resp.Checks[name] = "error: unreachable"
		}
		failed = append(failed, name)
		s.log.Warn("readiness check failed", "check", name, "err", err)
	}
	if len(failed) == 0 {
		return c.JSON(http.StatusOK, resp)
	}
	resp.Status = ""
	resp.Error = apiError(http.StatusServiceUnavailable, CodeNotReady, "not ready: "+strings.Join(failed, ", ")+" failed")
	return c.JSON(http.StatusServiceUnavailable, resp)
}

// homePage is GET /. The README's walk-through scrapes it with the
// web_scraping job, so it keeps a title, a meta description, headings
// and links.
const homePage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>jobhook</title>
<meta name="description" content="jobhook runs background jobs for serverless Go backends: a Postgres job table, a Redis priority queue and QStash-triggered workers.">
</head>
<body>
<h1>jobhook is running</h1>
<p>This server accepts jobs on <code>POST /api/jobs</code> and runs them when <code>POST /api/workers</code> is called.</p>
<h2>Status</h2>
<ul>
<li><a href="/healthz">/healthz</a>: the process is up</li>
<li><a href="/readyz">/readyz</a>: the database and Redis answer</li>
</ul>
<h2>Documentation</h2>
<p>See the <a href="https://github.com/jobhook/jobhook#readme">README</a> for the API, the configuration and a walk-through.</p>
</body>
</html>
`

// home serves GET /.
func (s *server) home(c echo.Context) error {
	return c.HTML(http.StatusOK, homePage)
}
