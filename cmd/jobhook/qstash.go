package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/schedules"
	"github.com/jobhook/jobhook/internal/trigger"
	"github.com/jobhook/jobhook/models"
)

// schedulesCmd serves `jobhook schedules sync [--dry-run] [--file F]` and
// `jobhook schedules list`.
func schedulesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, "usage: jobhook schedules sync [--dry-run] [--file qstash.schedules.json] | jobhook schedules list")
	}
	if len(args) == 0 {
		usage()
		return errUsage
	}
	fs := flag.NewFlagSet("schedules "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dryRun := fs.Bool("dry-run", false, "print the changes without making them")
	file := fs.String("file", "", "the schedules file (default SCHEDULES_FILE, qstash.schedules.json)")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 {
		usage()
		return errUsage
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if cfg.QStashToken == "" {
		return errors.New("QSTASH_TOKEN is not set: set it (and QSTASH_URL for a local QStash such as `jobhook qstash-dev`)")
	}
	client, err := qstashclient.New(qstashclient.Config{BaseURL: cfg.QStashURL, Token: cfg.QStashToken, WorkerURL: cfg.WorkerURL})
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		list, err := client.ListSchedules(ctx)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no schedules")
		}
		for _, s := range list {
			owner := "not jobhook's"
			if strings.HasPrefix(s.Id, schedules.IDPrefix) {
				owner = "jobhook"
			}
			state := "active"
			if s.IsPaused {
				state = "paused"
			}
			fmt.Fprintf(stdout, "%-28s %-14s %-7s %s %s (%s)\n", s.Id, s.Cron, state, orPOST(s.Method), s.Destination, owner)
		}
		return nil
	case "sync":
		path := *file
		if path == "" {
			path = cfg.SchedulesFile
		}
		f, err := schedules.Load(path)
		if err != nil {
			return err
		}
		changes, err := schedules.Sync(ctx, client, f, cfg.PublicURL, *dryRun)
		verb := map[string]string{"create": "created", "update": "updated", "delete": "deleted", "keep": "unchanged"}
		if *dryRun {
			verb = map[string]string{"create": "would create", "update": "would update", "delete": "would delete", "keep": "unchanged"}
		}
		for _, c := range changes {
			line := fmt.Sprintf("%-14s %s  %s %s", verb[c.Op], c.ID, c.Spec.Cron, c.Spec.Destination)
			if c.Why != "" {
				line += "  (" + c.Why + ")"
			}
			fmt.Fprintln(stdout, line)
		}
		return err
	default:
		usage()
		return errUsage
	}
}

func orPOST(m string) string {
	if m == "" {
		return "POST"
	}
	return m
}

// triggerCmd serves `jobhook trigger [--wait JOB_ID] [--timeout 2m]`.
func triggerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trigger", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wait := fs.Int64("wait", 0, "wait until this job is finished")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	opts := trigger.Options{WorkerURL: cfg.PublicURL + "/api/workers", WorkerSecret: cfg.WorkerSecret, WaitJobID: *wait, Timeout: *timeout}
	if *wait != 0 {
		db, err := database.Open(ctx, database.Options{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
		if err != nil {
			return err
		}
		defer db.Close()
		opts.Lookup = func(ctx context.Context, id int64) (*models.Job, error) {
			var job models.Job
			if err := db.Gorm.WithContext(ctx).Take(&job, id).Error; err != nil {
				return nil, err
			}
			return &job, nil
		}
	}
	res, err := trigger.Run(ctx, opts)
	for _, d := range res.Drains {
		fmt.Fprintf(stdout, "drain: claimed %d, completed %d, retried %d, failed %d, remaining %d\n", d.Claimed, d.Completed, d.Retried, d.Failed, d.Remaining)
	}
	if res.Job != nil {
		fmt.Fprintf(stdout, "job %d: %s\n", res.Job.ID, res.Job.Status)
	}
	return err
}

// qstashDevCmd serves `jobhook qstash-dev [--addr 127.0.0.1:8080]`: the
// in-process QStash on its own, for any QStash client.
func qstashDevCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("qstash-dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return errUsage
	}
	cfg, generated, err := qstashdev.ConfigFromEnv()
	if err != nil {
		return err
	}
	base, err := config.Load()
	if err != nil {
		return err
	}
	cfg.Logger = newLogger(base, stderr)
	srv, err := qstashdev.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	current, next := srv.SigningKeys()
	fmt.Fprintf(stdout, "QStash (jobhook qstash-dev) listening on http://%s\n", ln.Addr())
	if generated {
		fmt.Fprintln(stdout, "Generated credentials for this run (set them in the environment to keep them):")
	} else {
		fmt.Fprintln(stdout, "Credentials from the environment:")
	}
	fmt.Fprintf(stdout, "QSTASH_URL=http://%s\nQSTASH_TOKEN=%s\nQSTASH_CURRENT_SIGNING_KEY=%s\nQSTASH_NEXT_SIGNING_KEY=%s\n", ln.Addr(), srv.Token(), current, next)
	if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
