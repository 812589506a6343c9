package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jobhook/jobhook/handlers"
)

// newMetricsServer is the http.Server of METRICS_ADDR: GET /metrics alone
// (handlers.NewMetricsServer), behind token when it is set.
func newMetricsServer(metrics http.Handler, token string, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handlers.NewMetricsServer(handlers.MetricsServerConfig{Metrics: metrics, Token: token, Logger: log}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// listenMetrics binds METRICS_ADDR, when set (nil, nil otherwise): a
// start that cannot bind it fails, naming the address.
func (a *App) listenMetrics() (net.Listener, error) {
	if a.metricsServer == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", a.Config.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener on %s (METRICS_ADDR): %w", a.Config.MetricsAddr, err)
	}
	a.metricsAddr = ln.Addr().String()
	return ln, nil
}

// serveMetrics serves the metrics listener in the background.
func (a *App) serveMetrics(ln net.Listener) {
	if ln == nil {
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.metricsServer.Serve(handlers.ProtocolErrorListener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("metrics server stopped", "err", err)
		}
	}()
	a.log.Info("metrics are serving", "addr", a.metricsAddr)
}

// shutdownMetrics stops the metrics listener (when there is one) within
// ctx; the channel gets its error.
func (a *App) shutdownMetrics(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	if a.metricsServer == nil {
		done <- nil
		return done
	}
	go func() { done <- a.metricsServer.Shutdown(ctx) }()
	return done
}

// MetricsAddr is the address the METRICS_ADDR listener is bound to once
// Start has run ("" without one).
func (a *App) MetricsAddr() string { return a.metricsAddr }
