package handlers

import (
	"crypto/subtle"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestObserver is told of every request once it is answered: its
// method (one of the standard ones, else "OTHER"), its route (Echo's route
// pattern such as /api/jobs/:id, never the raw URL, or "unmatched"), the
// status sent and how long it took. internal/metrics counts them.
type RequestObserver func(method, route string, code int, took time.Duration)

// unmatchedRoute is the route label of a request no route matched.
const unmatchedRoute = "unmatched"

// knownMethods are the method labels; any other method is "OTHER", so a
// client cannot make up labels.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// observe reports one answered request to the configured RequestObserver.
func (s *server) observe(c echo.Context, took time.Duration) {
	if s.cfg.ObserveRequest == nil {
		return
	}
	method := c.Request().Method
	if !knownMethods[method] {
		method = "OTHER"
	}
	route := c.Path()
	if !s.routes[route] {
		route = unmatchedRoute
	}
	s.cfg.ObserveRequest(method, route, c.Response().Status, took)
}

// serveMetrics serves Config.Metrics at GET /metrics; with a MetricsToken
// only to "Authorization: Bearer <MetricsToken>" (compared in constant
// time): no header is 401 missing_token, another token 401 invalid_token.
func (s *server) serveMetrics(c echo.Context) error {
	if s.metricsToken != nil {
		header := c.Request().Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return apiError(http.StatusUnauthorized, CodeMissingToken, `an "Authorization: Bearer <METRICS_TOKEN>" header is required`)
		}
		token, ok := bearerToken(header)
		if !ok || subtle.ConstantTimeCompare(hashToken(token), s.metricsToken) != 1 {
			return apiError(http.StatusUnauthorized, CodeInvalidToken, "the metrics token is not valid")
		}
	}
	s.cfg.Metrics.ServeHTTP(c.Response(), c.Request())
	return nil
}
