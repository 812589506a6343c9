package handlers

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
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

// MetricsServerConfig configures NewMetricsServer.
type MetricsServerConfig struct {
	// Metrics is served at GET /metrics. Required.
	Metrics http.Handler
	// Token, when set, is the bearer token GET /metrics requires, checked
	// as on the public API.
	Token string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// NewMetricsServer returns the app of the separate metrics listener
// (METRICS_ADDR): GET and HEAD /metrics serve Metrics, behind Token when it
// is set; every other path or method is 404 not_found in the API's error
// shape. The caller owns the http.Server.
func NewMetricsServer(cfg MetricsServerConfig) *echo.Echo {
	if cfg.Metrics == nil {
		panic("handlers: NewMetricsServer needs Metrics")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &server{cfg: Config{Metrics: cfg.Metrics, Logger: cfg.Logger}, log: cfg.Logger.With("component", "metrics-http")}
	if cfg.Token != "" {
		s.metricsToken = hashToken(cfg.Token)
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = s.handleError
	e.StdLogger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	e.Use(s.securityHeaders, middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: s.logPanic}))
	e.Any("/metrics", func(c echo.Context) error {
		if m := c.Request().Method; m != http.MethodGet && m != http.MethodHead {
			return metricsNotFound(c)
		}
		return s.serveMetrics(c)
	})
	e.RouteNotFound("/*", metricsNotFound)
	return e
}

// metricsNotFound is the metrics listener's answer to every other path and
// method.
func metricsNotFound(echo.Context) error {
	return apiError(http.StatusNotFound, CodeNotFound, "not found")
}
