package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// jobFilter selects jobs: each field is one of GET /api/jobs's filters.
type jobFilter struct {
	status  models.Status
	typ     string
	user    string
	errText string
	parent  int64
	// from and to bound the jobs' creation: [from, to).
	from, to time.Time
}

// filterKeys are the keys of --filter, in the order help lists them.
var filterKeys = []string{"status", "type", "user", "error", "parent", "since", "until"}

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
	case "parent":
		id, err := strconv.ParseInt(value, 10, 64)
		if err != nil || id <= 0 {
			return usagef("parent: %q is not a job id", value)
		}
		f.parent = id
	case "since", "until":
		at, err := parseWhen(value, time.Now())
		if err != nil {
			return usagef("%s: %v", key, err)
		}
		if key == "since" {
			f.from = at
		} else {
			f.to = at
		}
	}
	return nil
}

// parseWhen reads a time as an RFC 3339 time or as a duration before now
// ("90m": an hour and a half ago).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T09:00:00Z) nor a duration ago (90m, 24h)", s)
}

// options are the API's list options for f.
func (f jobFilter) options() client.ListOptions {
	return client.ListOptions{Status: f.status, Type: f.typ, User: f.user, Error: f.errText, Parent: f.parent, CreatedFrom: f.from, CreatedTo: f.to}
}

func statusList() string {
	names := make([]string, len(models.Statuses))
	for i, s := range models.Statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

// listAll pages through GET /api/jobs, newest first, keeping the jobs f
// matches, until limit are kept (limit 0: every one) or the pages end.
// more reports that the pages did not end: more jobs may match.
func listAll(ctx context.Context, jc *client.JobsClient, f jobFilter, limit, pageSize int) (found []models.Job, more bool, err error) {
	found = []models.Job{}
	opts := f.options()
	for {
		opts.Limit = pageSize
		if left := limit - len(found); limit > 0 && left < pageSize {
			opts.Limit = left
		}
		page, err := jc.List(ctx, opts)
		if err != nil {
			return found, false, err
		}
		found = append(found, page.Jobs...)
		if limit > 0 && len(found) >= limit {
			return found[:limit], page.NextCursor != "" || len(found) > limit, nil
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
	if f.parent != 0 {
		parts = append(parts, fmt.Sprintf("children of %d", f.parent))
	}
	if !f.from.IsZero() {
		parts = append(parts, "created since "+f.from.UTC().Format(time.RFC3339))
	}
	if !f.to.IsZero() {
		parts = append(parts, "created before "+f.to.UTC().Format(time.RFC3339))
	}
	if len(parts) == 0 {
		return "every job"
	}
	return strings.Join(parts, ", ")
}
