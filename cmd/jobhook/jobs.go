package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/internal/config"
)

// defaultJobhookURL is JOBHOOK_URL's default: a server started with
// `jobhook serve` and no settings.
const defaultJobhookURL = "http://localhost:8080"

// jobsSettings are the settings every jobs command reads.
var jobsSettings = []string{"ADMIN_TOKEN", "JOBHOOK_URL"}

func jobsCmd() *cobra.Command {
	return group(&cobra.Command{
		Use:   "jobs <command>",
		Short: "list, show, count, retry, cancel and pause jobs through the HTTP API, as the operator",
		Long: `Operate on every user's jobs through the server's HTTP API (/api/jobs),
as the operator: each call carries "Authorization: Bearer $ADMIN_TOKEN"
(the server's own ADMIN_TOKEN; it is never printed, and is not a flag so
that it stays out of the process list). The server is --url, else
JOBHOOK_URL, else ` + defaultJobhookURL + `. No database is read locally.

Exit status: 0 success; 1 the API refused a call (its status, code and
message are printed, such as "404 job_not_found: ..."), the server could
not be reached, or a job of a bulk retry could not be retried; 2 a usage
error (an unknown flag or filter, a bad job id or value).`,
	}, jobsListCmd(), jobsGetCmd(), jobsStatsCmd(), jobsRetryCmd(), jobsCancelCmd(), jobsPauseCmd(), jobsResumeCmd())
}

// apiFlags are the flags every jobs command has to reach the server.
type apiFlags struct {
	url string
}

func (f *apiFlags) add(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().StringVar(&f.url, "url", "", "the server's base URL (default $JOBHOOK_URL, else "+defaultJobhookURL+")")
	return reads(cmd, jobsSettings...)
}

// client returns a client of the server with the operator's token. A bad
// --url is a usage error; a missing ADMIN_TOKEN or a bad JOBHOOK_URL is a
// failure of the settings.
func (f *apiFlags) client() (*client.JobsClient, error) {
	if f.url != "" {
		if _, err := client.NewJobsClient(f.url, "-", nil); err != nil {
			return nil, usagef("--url: %v", err)
		}
	}
	cfg, err := config.Load("ADMIN_TOKEN") // also reads .env into the environment
	if err != nil {
		return nil, err
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("ADMIN_TOKEN is not set: the jobs commands call the API as the operator, with the server's ADMIN_TOKEN")
	}
	u := f.url
	if u == "" {
		u = os.Getenv("JOBHOOK_URL")
	}
	if u == "" {
		u = defaultJobhookURL
	}
	jc, err := client.NewJobsClient(u, cfg.AdminToken, nil)
	if err != nil {
		return nil, fmt.Errorf("JOBHOOK_URL: %w", err)
	}
	return jc, nil
}

// jobIDArg parses the one argument of get, retry and cancel.
func jobIDArg(cmd *cobra.Command, args []string) (int64, error) {
	if len(args) == 0 {
		return 0, usagef("a job id is needed")
	}
	if len(args) > 1 {
		return 0, usagef("unexpected argument %q: %s takes one job id", args[1], cmd.CommandPath())
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, usagef("unexpected argument %q: a job id is a positive integer", args[0])
	}
	return id, nil
}

func jobsGetCmd() *cobra.Command {
	var (
		api    apiFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "get ID [--json] [--url URL]",
		Short: "show one job with its history of attempts",
		Long: `Show one job (GET /api/jobs/ID) with its history, one line per finished
attempt, oldest first. Secret payload fields come redacted. With --json,
the API's job object as it is, with "history".

Exit status: 0 shown; 1 the API refused (404 job_not_found when there is
no such job) or could not be reached; 2 a usage error.`,
		Example: `  jobhook jobs get 42
  jobhook jobs get 42 --json | jq .history`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := jobIDArg(cmd, args)
			if err != nil {
				return err
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			job, err := jc.Get(cmd.Context(), id)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), job)
			}
			return writeJob(cmd.OutOrStdout(), job)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return api.add(cmd)
}

func jobsCancelCmd() *cobra.Command {
	var api apiFlags
	cmd := &cobra.Command{
		Use:   "cancel ID [--url URL]",
		Short: "cancel an unfinished job and its unfinished children",
		Long: `Cancel a pending, scheduled or running job (POST /api/jobs/ID/cancel),
with its unfinished children; a running handler is stopped.

Exit status: 0 cancelled; 1 the API refused (409 job_not_cancellable for a
finished job, 404 job_not_found) or could not be reached; 2 a usage error.`,
		Example:               `  jobhook jobs cancel 42`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := jobIDArg(cmd, args)
			if err != nil {
				return err
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			job, err := jc.Cancel(cmd.Context(), id)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancelled %d (%s, %s)\n", job.ID, job.Type, job.UserID)
			return nil
		},
	}
	return api.add(cmd)
}
