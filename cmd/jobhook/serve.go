package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/internal/app"
	"github.com/jobhook/jobhook/internal/config"
)

func serveCmd() *cobra.Command {
	return readsAll(&cobra.Command{
		Use:   "serve",
		Short: "run the HTTP API; QStash (real, or in-process by default) drives the worker",
		Long: `Run the HTTP API on PORT. QStash — the real one when QSTASH_TOKEN is set,
otherwise an in-process one — calls POST /api/workers to run the jobs.
With APP_ENV=production it refuses to start, naming each problem on its
own line, with development secrets, embedded backends, no PUBLIC_URL or
SCRAPE_ALLOW_PRIVATE=true. SIGTERM or SIGINT stops it gracefully.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), cmd.ErrOrStderr())
		},
	})
}

func serve(ctx context.Context, stderr io.Writer) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		_ = a.Shutdown(context.Background())
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	if err := a.Start(ln); err != nil {
		_ = ln.Close()
		_ = a.Shutdown(context.Background())
		return err
	}
	<-ctx.Done()
	log.Info("shutting down", "grace", cfg.ShutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	// Shutdown is bounded (app.ShutdownMargin after the grace period);
	// this bound holds even if it were not, so that serve always exits
	// within SHUTDOWN_GRACE + 5 s.
	done := make(chan error, 1)
	go func() { done <- a.Shutdown(sctx) }()
	limit := time.NewTimer(cfg.ShutdownGrace + serveExitMargin)
	defer limit.Stop()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-limit.C:
		return fmt.Errorf("shutdown not finished %s after the grace period; exiting (jobs still processing are recovered by the reaper)", serveExitMargin)
	}
	log.Info("stopped")
	return nil
}

// serveExitMargin is how long after SHUTDOWN_GRACE serve exits at the
// latest: app.Shutdown's own margin and a little more.
const serveExitMargin = app.ShutdownMargin + 700*time.Millisecond

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if w == nil {
		w = os.Stderr
	}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
