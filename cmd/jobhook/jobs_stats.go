package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/models"
)

func jobsStatsCmd() *cobra.Command {
	var (
		api    apiFlags
		since  time.Duration
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "stats [--since 24h] [--json] [--url URL]",
		Short: "count every user's jobs by type and status, and the last hour's throughput",
		Long: `Count every user's jobs (GET /api/jobs/stats): a table with a row per job
type and a column per status, then a TOTAL row, then the jobs finished in
the last hour with its failure rate (failed out of completed and failed).
Every unfinished job (scheduled, pending, processing) is counted; finished
ones (completed, failed, cancelled) only when they finished within --since.
--json prints the API's answer, with the per-minute counts of the last hour.

Exit status: 0 counted; 1 the API refused or could not be reached; 2 a
usage error (--since outside 1m to 720h).`,
		Example: `  jobhook jobs stats
  jobhook jobs stats --since 1h
  jobhook jobs stats --json | jq '.minutes[-1]'`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != 0 && (since < time.Minute || since > 720*time.Hour) {
				return usagef("--since must be from 1m to 720h, not %s", since)
			}
			jc, err := api.client()
			if err != nil {
				return err
			}
			st, err := jc.Stats(cmd.Context(), since)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			return writeStats(cmd.OutOrStdout(), st)
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&since, "since", 0, "count the jobs finished within this long (default the server's, 24h)")
	fl.BoolVar(&asJSON, "json", false, "print the API's JSON answer")
	return api.add(cmd)
}

// writeStats prints the counts as a type × status table, a total row, and
// a line on the last hour.
func writeStats(w io.Writer, st client.Stats) error {
	byType := map[string]map[models.Status]int64{}
	total := map[models.Status]int64{}
	for _, c := range st.Counts {
		if byType[c.Type] == nil {
			byType[c.Type] = map[models.Status]int64{}
		}
		byType[c.Type][c.Status] += c.Count
		total[c.Status] += c.Count
	}
	types := make([]string, 0, len(byType))
	for typ := range byType {
		types = append(types, typ)
	}
	slices.Sort(types)

	tw := newTable(w)
	fmt.Fprint(tw, "TYPE")
	for _, s := range models.Statuses {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw)
	row := func(name string, counts map[models.Status]int64) {
		fmt.Fprint(tw, name)
		for _, s := range models.Statuses {
			fmt.Fprintf(tw, "\t%d", counts[s])
		}
		fmt.Fprintln(tw)
	}
	for _, typ := range types {
		row(cell(typ), byType[typ])
	}
	row("TOTAL", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	var hour client.MinuteCount
	for _, m := range st.Minutes {
		hour.Completed += m.Completed
		hour.Failed += m.Failed
		hour.Cancelled += m.Cancelled
	}
	rate := "no job finished"
	if n := hour.Completed + hour.Failed; n > 0 {
		rate = fmt.Sprintf("failure rate %.1f%%", 100*float64(hour.Failed)/float64(n))
	}
	window := time.Duration(st.SinceSeconds) * time.Second
	_, err := fmt.Fprintf(w, "\nfinished jobs counted since %s (%s); last hour: %d completed, %d failed, %d cancelled, %s\n",
		st.At.Add(-window).UTC().Format(tableTime), window, hour.Completed, hour.Failed, hour.Cancelled, rate)
	return err
}
