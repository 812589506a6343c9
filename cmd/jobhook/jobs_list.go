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
		parent   string
		since    string
		until    string
		limit    int
		pageSize int
		all      bool
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "list [--status S] [--type T] [--user U] [--error TEXT] [--parent ID] [--since T] [--until T] [--limit N | --all] [--json] [--url URL]",
		Short: "list jobs, newest first, as a table or JSON",
		Long: `List every user's jobs, newest first (GET /api/jobs, a page of up to
--page-size at a time). Every filter is the API's: --status, --type,
--user (exact), --error (text in the job's error, any case), --parent (a
job's children), --since and --until (the jobs created in [since, until):
an RFC 3339 time, or a duration ago such as 90m or 24h).

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
  jobhook jobs list --user alice --error timeout
  jobhook jobs list --status failed --since 24h --until 1h
  jobhook jobs list --parent 42`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, kv := range [][2]string{{"status", status}, {"parent", parent}, {"since", since}, {"until", until}} {
				if kv[1] == "" {
					continue
				}
				if err := f.set(kv[0], kv[1]); err != nil {
					return err
				}
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
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: the first %d jobs shown; more match (--all shows every one)\n", cmd.CommandPath(), len(found))
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&status, "status", "", "only jobs in this status: "+statusList())
	fl.StringVar(&f.typ, "type", "", "only jobs of this type")
	fl.StringVar(&f.user, "user", "", "only this user's jobs")
	fl.StringVar(&f.errText, "error", "", "only jobs whose error contains this text, any case")
	fl.StringVar(&parent, "parent", "", "only the children of this job")
	fl.StringVar(&since, "since", "", "only jobs created at or after this time (RFC 3339, or a duration ago: 24h)")
	fl.StringVar(&until, "until", "", "only jobs created before this time (RFC 3339, or a duration ago: 1h)")
	fl.IntVar(&limit, "limit", defaultListLimit, "show at most this many jobs")
	fl.BoolVar(&all, "all", false, "show every matching job, reading every page")
	fl.IntVar(&pageSize, "page-size", jobs.MaxListLimit, "jobs asked for per API call")
	fl.BoolVar(&asJSON, "json", false, "print a JSON array of the jobs")
	return api.add(cmd)
}
