package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/internal/config"
)

func triggerCmd() *cobra.Command {
	var (
		wait         int64
		timeout      time.Duration
		pollInterval time.Duration
		serverURL    string
	)
	cmd := &cobra.Command{
		Use:   "trigger [--wait JOB_ID] [--timeout 2m] [--url URL]",
		Short: "call POST /api/workers; with --wait, until the job is finished",
		Long: `Call the server's worker endpoint, POST /api/workers, with the bearer
WORKER_SECRET, as QStash or a plain cron would. The server is --url, or
PUBLIC_URL (default http://localhost:$PORT).

With --wait JOB_ID it then waits until that job is finished, reading it
from the server (GET /api/workers/jobs/JOB_ID, with the same secret: no
database is read locally), and calls the worker again when the job is
due: at most once per --poll-interval, and never before the job's next
run time, so a job waiting out a retry backoff is left alone.

Exit status: 0 when the call succeeded (with --wait: the job completed);
1 when it failed, or the job failed, was cancelled or did not finish
within --timeout, with the job's error; 2 for a usage error.`,
		Example: `  jobhook trigger
  jobhook trigger --wait 42 --timeout 5m
  jobhook trigger --url https://jobs.example.com --wait 42`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wait < 0 || cmd.Flags().Changed("wait") && wait == 0 {
				return usagef("--wait takes a job id, a positive number, not %d", wait)
			}
			if timeout <= 0 {
				return usagef("--timeout must be positive, not %s", timeout)
			}
			if pollInterval <= 0 {
				return usagef("--poll-interval must be positive, not %s", pollInterval)
			}
			names := []string{"APP_ENV", "WORKER_SECRET"}
			if serverURL == "" {
				names = append(names, "PORT", "PUBLIC_URL")
			}
			cfg, err := config.Load(names...)
			if err != nil {
				return err
			}
			if serverURL == "" {
				serverURL = cfg.PublicURL
			}
			res, err := client.TriggerWorker(cmd.Context(), client.Options{
				URL:          serverURL,
				WorkerSecret: cfg.WorkerSecret,
				WaitForJobID: wait,
				Timeout:      timeout,
				PollInterval: pollInterval,
			})
			out := cmd.OutOrStdout()
			for _, d := range res.Drains {
				fmt.Fprintf(out, "drain: %s\n", d)
			}
			if err != nil {
				return err
			}
			if res.Job != nil {
				fmt.Fprintf(out, "job %d: %s\n", res.Job.ID, res.Job.Status)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Int64Var(&wait, "wait", 0, "wait until this job is finished")
	f.DurationVar(&timeout, "timeout", client.DefaultTimeout, "give up after this long")
	f.DurationVar(&pollInterval, "poll-interval", client.DefaultPollInterval, "shortest time between two worker calls, and between two reads of the job")
	f.StringVar(&serverURL, "url", "", "the server's base URL (default $PUBLIC_URL)")
	return reads(cmd, "APP_ENV", "PORT", "PUBLIC_URL", "WORKER_SECRET")
}
