package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/schedules"
)

// The settings the schedules commands read: the QStash API, and for sync
// the file and the address its schedules call. Neither reads the signing
// keys, which only serve needs to verify QStash's calls.
var (
	schedulesListSettings = []string{"QSTASH_TOKEN", "QSTASH_URL"}
	schedulesSyncSettings = []string{"APP_ENV", "QSTASH_TOKEN", "QSTASH_URL", "PORT", "PUBLIC_URL", "SCHEDULES_FILE"}
)

func schedulesCmd() *cobra.Command {
	var (
		dryRun bool
		file   string
	)
	sync := reads(&cobra.Command{
		Use:   "sync [--dry-run] [--file qstash.schedules.json]",
		Short: "make QStash's schedules match qstash.schedules.json",
		Long: `Make QStash's schedules match the schedules file: create what is missing,
update what differs, delete the jobhook- schedules the file no longer has.
Schedules that are not jobhook's are never touched. Each schedule calls
its path on PUBLIC_URL. Needs QSTASH_TOKEN (and QSTASH_URL for a QStash
other than Upstash's, such as jobhook qstash-dev); not the signing keys.`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return schedulesSync(cmd.Context(), cmd.OutOrStdout(), file, dryRun)
		},
	}, schedulesSyncSettings...)
	sync.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	sync.Flags().StringVar(&file, "file", "", "the schedules file (default $SCHEDULES_FILE, "+schedules.DefaultFile+")")

	list := reads(&cobra.Command{
		Use:   "list",
		Short: "list QStash's schedules, marking jobhook's",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return schedulesList(cmd.Context(), cmd.OutOrStdout())
		},
	}, schedulesListSettings...)

	return group(&cobra.Command{
		Use:   "schedules sync|list",
		Short: "manage QStash's schedules from qstash.schedules.json",
	}, sync, list)
}

// qstashClient loads the named settings and connects to the QStash API.
func qstashClient(names []string) (*config.Config, *qstashclient.Client, error) {
	cfg, err := config.Load(names...)
	if err != nil {
		return nil, nil, err
	}
	if cfg.QStashToken == "" {
		return nil, nil, errors.New("QSTASH_TOKEN is not set: set it (and QSTASH_URL for a local QStash such as `jobhook qstash-dev`)")
	}
	client, err := qstashclient.New(qstashclient.Config{BaseURL: cfg.QStashURL, Token: cfg.QStashToken, WorkerURL: cfg.WorkerURL})
	if err != nil {
		return nil, nil, err
	}
	return cfg, client, nil
}

func schedulesList(ctx context.Context, stdout io.Writer) error {
	_, client, err := qstashClient(schedulesListSettings)
	if err != nil {
		return err
	}
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
}

func schedulesSync(ctx context.Context, stdout io.Writer, file string, dryRun bool) error {
	cfg, client, err := qstashClient(schedulesSyncSettings)
	if err != nil {
		return err
	}
	if file == "" {
		file = cfg.SchedulesFile
	}
	f, err := schedules.Load(file)
	if err != nil {
		return err
	}
	changes, err := schedules.Sync(ctx, client, f, cfg.PublicURL, dryRun)
	verb := map[string]string{"create": "created", "update": "updated", "delete": "deleted", "keep": "unchanged"}
	if dryRun {
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
}

func orPOST(m string) string {
	if m == "" {
		return "POST"
	}
	return m
}

// qstashDevCmd serves `jobhook qstash-dev [--addr 127.0.0.1:8080]`: the
// in-process QStash on its own, for any QStash client.
func qstashDevCmd() *cobra.Command {
	var addr string
	cmd := reads(&cobra.Command{
		Use:   "qstash-dev [--addr 127.0.0.1:8080]",
		Short: "run the in-process QStash on its own, for any QStash client",
		Long: `Run the in-process QStash on its own: the QStash API (publish, schedules,
messages) for any QStash client. It takes QSTASH_TOKEN and the signing
keys from the environment, or generates and prints them.`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return qstashDev(cmd.Context(), addr, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}, "QSTASH_TOKEN", "QSTASH_CURRENT_SIGNING_KEY", "QSTASH_NEXT_SIGNING_KEY", "LOG_LEVEL", "LOG_FORMAT")
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	return cmd
}

func qstashDev(ctx context.Context, addr string, stdout, stderr io.Writer) error {
	// The credentials are qstashdev's to read (and generate when unset).
	base, err := config.Load("LOG_LEVEL", "LOG_FORMAT")
	if err != nil {
		return err
	}
	cfg, generated, err := qstashdev.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = newLogger(base, stderr)
	srv, err := qstashdev.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
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
