package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func jobsRetryCmd() *cobra.Command {
	var (
		api      apiFlags
		filter   string
		pageSize int
		dryRun   bool
	)
	cmd := &cobra.Command{
		Use:   "retry ID | --filter status=failed,type=X [--dry-run] [--url URL]",
		Short: "retry a failed or cancelled job, or every job a filter matches",
		Long: `Retry one failed or cancelled job (POST /api/jobs/ID/retry): it is
pending again with a fresh attempt budget, and its failed or cancelled
children start again with it.

With --filter instead of an ID, every matching job is listed first (all
pages of GET /api/jobs), then each is retried, oldest first, one line per
job. --filter takes comma-separated key=value pairs: status (failed, the
default, or cancelled), type, user, error (text in the job's error, any
case), parent (a job's children), since and until (creation time: RFC
3339, or a duration ago such as 24h), all applied by the API. A job whose parent
was retried in the same run was retried with it and is not retried again.
--dry-run lists what would be retried and changes nothing.

Exit status: 0 every job was retried (none matching included); 1 the API
refused a call (for a bulk retry: any job that could not be retried, each
named on stderr with the API's code, the others still retried) or could
not be reached; 2 a usage error (an ID and --filter both or neither, an
unknown filter key or status).`,
		Example: `  jobhook jobs retry 42
  jobhook jobs retry --filter status=failed,type=web_scraping
  jobhook jobs retry --filter type=ai_image,error=timeout --dry-run`,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if filter == "" {
				id, err := jobIDArg(cmd, args)
				if err != nil {
					return err
				}
				if dryRun {
					return usagef("--dry-run goes with --filter")
				}
				jc, err := api.client()
				if err != nil {
					return err
				}
				job, err := jc.Retry(cmd.Context(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "retried %d (%s, %s): %s\n", job.ID, job.Type, job.UserID, job.Status)
				return nil
			}
			if len(args) > 0 {
				return usagef("unexpected argument %q: give a job id or --filter, not both", args[0])
			}
			f, err := parseFilter(filter)
			if err != nil {
				return err
			}
			if f.status == "" {
				f.status = models.StatusFailed
			}
			if f.status != models.StatusFailed && f.status != models.StatusCancelled {
				return usagef("--filter: only failed or cancelled jobs can be retried, not %s ones", f.status)
			}
			if err := checkPageSize(pageSize); err != nil {
				return err
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			found, _, err := listAll(cmd.Context(), jc, f, 0, pageSize)
			if err != nil {
				return err
			}
			return retryEach(cmd.Context(), jc, found, f, dryRun, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&filter, "filter", "", "retry every job matching key=value,… (keys: status, type, user, error, parent, since, until)")
	fl.BoolVar(&dryRun, "dry-run", false, "with --filter: list the jobs that would be retried, retry none")
	fl.IntVar(&pageSize, "page-size", jobs.MaxListLimit, "jobs asked for per API call while listing")
	return api.add(cmd)
}

// retryEach retries the jobs found, oldest first, skipping those whose
// parent it retried (retried with it). It names each job on out, and each
// refusal on errOut; any refusal makes it return an error.
func retryEach(ctx context.Context, jc *client.JobsClient, found []models.Job, f jobFilter, dryRun bool, out, errOut io.Writer) error {
	slices.SortFunc(found, func(a, b models.Job) int { return cmp.Compare(a.ID, b.ID) })
	verb := "retried"
	if dryRun {
		verb = "would retry"
	}
	done := map[int64]bool{}
	var failed int
	for _, j := range found {
		if j.ParentID != nil && done[*j.ParentID] {
			done[j.ID] = true
			fmt.Fprintf(out, "%s %d (%s, %s) with its parent %d\n", verb, j.ID, cell(j.Type), cell(j.UserID), *j.ParentID)
			continue
		}
		if !dryRun {
			if _, err := jc.Retry(ctx, j.ID); err != nil {
				failed++
				fmt.Fprintf(errOut, "job %d: %v\n", j.ID, err)
				continue
			}
		}
		done[j.ID] = true
		fmt.Fprintf(out, "%s %d (%s, %s)\n", verb, j.ID, cell(j.Type), cell(j.UserID))
	}
	fmt.Fprintf(out, "%s %d of %d jobs matching %s\n", verb, len(done), len(found), f.describe())
	if failed > 0 {
		return fmt.Errorf("%d of %d jobs could not be retried", failed, len(found))
	}
	return nil
}
