package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// jobFilter selects jobs. Status and type are the API's filters; user and
// error text are applied here, to the pages the API sends.
type jobFilter struct {
	status  models.Status
	typ     string
	user    string
	errText string
}

// filterKeys are the keys of --filter, in the order help lists them.
var filterKeys = []string{"status", "type", "user", "error"}

// parseFilter reads "status=failed,type=X": comma-separated key=value
// pairs of filterKeys, each at most once.
func parseFilter(s string) (jobFilter, error) {
	var f jobFilter
	seen := map[string]bool{}
	for _, pair := range strings.Split(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || key == "" {
			return f, usagef("--filter: %q is not key=value (keys: %s)", pair, strings.Join(filterKeys, ", "))
		}
		if !slices.Contains(filterKeys, key) {
			return f, usagef("--filter: unknown key %q (keys: %s)", key, strings.Join(filterKeys, ", "))
		}
		if seen[key] {
			return f, usagef("--filter: %s given twice", key)
		}
		seen[key] = true
		if err := f.set(key, value); err != nil {
			return f, err
		}
	}
	return f, nil
}

// set sets one filter by its key; an unknown status is a usage error.
func (f *jobFilter) set(key, value string) error {
	switch key {
	case "status":
		if value != "" && !models.Status(value).Valid() {
			return usagef("unknown status %q (statuses: %s)", value, statusList())
		}
		f.status = models.Status(value)
	case "type":
		f.typ = value
	case "user":
		f.user = value
	case "error":
		f.errText = value
	}
	return nil
}

func statusList() string {
	names := make([]string, len(models.Statuses))
	for i, s := range models.Statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// match applies the filters the API lacks.
func (f jobFilter) match(j models.Job) bool {
	if f.user != "" && j.UserID != f.user {
		return false
	}
	return f.errText == "" || strings.Contains(strings.ToLower(j.Error), strings.ToLower(f.errText))
}

// clientSide reports whether some filter is applied here, not by the API.
func (f jobFilter) clientSide() bool { return f.user != "" || f.errText != "" }

// listAll pages through GET /api/jobs, newest first, keeping the jobs f
// matches, until limit are kept (limit 0: every one) or the pages end.
// more reports that the pages did not end: more jobs may match.
func listAll(ctx context.Context, jc *client.JobsClient, f jobFilter, limit, pageSize int) (found []models.Job, more bool, err error) {
	found = []models.Job{}
	opts := client.ListOptions{Status: f.status, Type: f.typ}
	for {
		opts.Limit = pageSize
		if left := limit - len(found); limit > 0 && !f.clientSide() && left < pageSize {
			opts.Limit = left
		}
		page, err := jc.List(ctx, opts)
		if err != nil {
			return found, false, err
		}
		for _, j := range page.Jobs {
			if f.match(j) {
				found = append(found, j)
			}
			if limit > 0 && len(found) == limit {
				return found, page.NextCursor != "" || j.ID != page.Jobs[len(page.Jobs)-1].ID, nil
			}
		}
		if page.NextCursor == "" {
			return found, false, nil
		}
		opts.Cursor = page.NextCursor
	}
}

// checkPageSize refuses a --page-size the API would.
func checkPageSize(n int) error {
	if n < 1 || n > jobs.MaxListLimit {
		return usagef("--page-size must be from 1 to %d, not %d", jobs.MaxListLimit, n)
	}
	return nil
}

// describe names a filter for people: "status failed, type X".
func (f jobFilter) describe() string {
	var parts []string
	for _, p := range [][2]string{{"status", string(f.status)}, {"type", f.typ}, {"user", f.user}, {"error containing", f.errText}} {
		if p[1] != "" {
			parts = append(parts, fmt.Sprintf("%s %q", p[0], p[1]))
		}
	}
	if len(parts) == 0 {
		return "every job"
	}
	return strings.Join(parts, ", ")
}
