package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/jobs"
)

// defaultListLimit is how many jobs `jobs list` shows without --all.
const defaultListLimit = 100

func jobsListCmd() *cobra.Command {
	var (
		api      apiFlags
		f        jobFilter
		status   string
		limit    int
		pageSize int
		all      bool
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "list [--status S] [--type T] [--user U] [--error TEXT] [--limit N | --all] [--json] [--url URL]",
		Short: "list jobs, newest first, as a table or JSON",
		Long: `List every user's jobs, newest first (GET /api/jobs, a page of up to
--page-size at a time). --status and --type are the API's filters; --user
(exact) and --error (text in the job's error, any case) are applied here,
to the pages the API sends, so with them every page is read until --limit
jobs match.

Without --all at most --limit jobs are shown, and a note on stderr says
when more match; with --all every matching job is. --json prints a JSON
array of the API's job objects (an empty array when none match), so
'jobhook jobs list --status failed --all --json | jq length' counts them.

The table shows ID, TYPE, STATUS, ATTEMPTS (made/allowed), USER, CREATED
(UTC) and ERROR (its first line, shortened).

Exit status: 0 listed (none matching included); 1 the API refused or
could not be reached; 2 a usage error (an unknown status, a bad number).`,
		Example: `  jobhook jobs list --status failed
  jobhook jobs list --status failed --type web_scraping --all --json | jq length
  jobhook jobs list --user alice --error timeout`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.set("status", status); err != nil {
				return err
			}
			if limit < 1 {
				return usagef("--limit must be positive, not %d", limit)
			}
			if err := checkPageSize(pageSize); err != nil {
				return err
			}
			if all {
				limit = 0
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			found, more, err := listAll(cmd.Context(), jc, f, limit, pageSize)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), found)
			} else {
				err = writeJobTable(cmd.OutOrStdout(), found)
			}
			if err == nil && more {
				verb := "match"
				if f.clientSide() {
					verb = "may match" // the pages left were not read
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: the first %d jobs shown; more %s (--all shows every one)\n", cmd.CommandPath(), len(found), verb)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&status, "status", "", "only jobs in this status: "+statusList())
	fl.StringVar(&f.typ, "type", "", "only jobs of this type")
	fl.StringVar(&f.user, "user", "", "only this user's jobs (filtered here)")
	fl.StringVar(&f.errText, "error", "", "only jobs whose error contains this text, any case (filtered here)")
	fl.IntVar(&limit, "limit", defaultListLimit, "show at most this many jobs")
	fl.BoolVar(&all, "all", false, "show every matching job, reading every page")
	fl.IntVar(&pageSize, "page-size", jobs.MaxListLimit, "jobs asked for per API call")
	fl.BoolVar(&asJSON, "json", false, "print a JSON array of the jobs")
	return api.add(cmd)
}
