package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/models"
)

// errorWidth is how many characters of an error a table shows.
const errorWidth = 60

// tableTime is how tables show times: UTC, to the second.
const tableTime = "2006-01-02 15:04:05"

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// writeJobTable prints one line per job under a header.
func writeJobTable(w io.Writer, list []models.Job) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tTYPE\tSTATUS\tATTEMPTS\tUSER\tCREATED\tERROR")
	for _, j := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", j.ID, cell(j.Type), j.Status, j.Attempts, j.MaxAttempts,
			cell(j.UserID), j.CreatedAt.UTC().Format(tableTime), shorten(j.Error, errorWidth))
	}
	return tw.Flush()
}

// writeJob prints a job's fields, one per line, then its history.
func writeJob(w io.Writer, j *client.Job) error {
	tw := newTable(w)
	row := func(name, value string) {
		if value != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", name, value)
		}
	}
	row("id", fmt.Sprint(j.ID))
	row("type", cell(j.Type))
	row("status", string(j.Status))
	row("user", cell(j.UserID))
	row("priority", fmt.Sprint(j.Priority))
	row("attempts", fmt.Sprintf("%d/%d", j.Attempts, j.MaxAttempts))
	if j.ParentID != nil {
		row("parent", fmt.Sprint(*j.ParentID))
	}
	row("created", j.CreatedAt.UTC().Format(tableTime))
	row("scheduled for", when(j.ScheduledFor))
	if !j.Status.Finished() {
		row("next run", j.NextRunAt.UTC().Format(tableTime))
	}
	row("started", when(j.StartedAt))
	row("completed", when(j.CompletedAt))
	row("expires", when(j.ExpiresAt))
	row("error", cell(j.Error))
	if len(j.Result) > 0 {
		row("result", cell(string(j.Result)))
	}
	row("payload", cell(string(j.Payload)))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(j.History) == 0 {
		_, err := fmt.Fprintln(w, "\nhistory: no finished attempt yet")
		return err
	}
	fmt.Fprintln(w, "\nhistory:")
	tw = newTable(w)
	fmt.Fprintln(tw, "ATTEMPT\tOUTCOME\tSTARTED\tFINISHED\tDURATION\tERROR")
	for _, a := range j.History {
		took := ""
		if a.StartedAt != nil {
			took = duration(a.FinishedAt.Sub(*a.StartedAt))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", a.Attempt, cell(a.Outcome), when(a.StartedAt),
			a.FinishedAt.UTC().Format(tableTime), took, shorten(a.Error, errorWidth))
	}
	return tw.Flush()
}

// duration rounds d for a table: to the millisecond, or the microsecond
// below one.
func duration(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// when formats an optional time; "" when nil.
func when(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(tableTime)
}

// cell makes text fit one table cell: control characters (a newline, a
// tab, a terminal escape) become spaces.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// shorten is the first line of s, cut to n characters with "…".
func shorten(s string, n int) string {
	s, _, cut := strings.Cut(s, "\n")
	s = cell(strings.TrimSpace(s))
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	} else if cut {
		return s + " …"
	}
	return s
}
