package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// statsWindow is the window of the overview's finished counts.
const statsWindow = 24 * time.Hour

// overviewView is the overview page.
type overviewView struct {
	Statuses []models.Status
	// Rows are the counts per type, one column per status.
	Rows   []countRow
	Totals []int64
	Since  string
	Chart  template.HTML
	// Hour sums the chart's minutes.
	HourCompleted, HourFailed, HourCancelled int64
	Depth                                    *jobs.Depth
	DepthError                               string
	Types                                    []jobs.TypeStatus
	PausedKeys                               []jobs.FlowKeyStatus
	FlowKeysError                            string
	Schedules                                []scheduleRow
	RetentionCompleted, RetentionFailed      string
}

// countRow is one job type's counts, aligned with overviewView.Statuses.
type countRow struct {
	Type   string
	Counts []int64
	Total  int64
}

// scheduleRow is one QStash schedule.
type scheduleRow struct {
	Name, Cron, Method, Destination string
}

// overview shows the counts, the last hour's throughput, the queue, the
// pauses, the schedules and the retention settings.
func (d *dashboard) overview(c echo.Context) error {
	ctx := c.Request().Context()
	st, err := d.cfg.Service.Stats(ctx, jobs.StatsRequest{UserID: jobs.Operator, Since: statsWindow})
	if err != nil {
		return d.errorPage(c, err)
	}
	types, err := d.cfg.Service.Types(ctx, jobs.Operator)
	if err != nil {
		return d.errorPage(c, err)
	}
	v := overviewView{
		Statuses:           models.Statuses,
		Since:              formatDuration(st.Since),
		Chart:              throughputChart(st.Minutes),
		Types:              types,
		RetentionCompleted: formatDuration(d.cfg.RetentionCompleted),
		RetentionFailed:    formatDuration(d.cfg.RetentionFailed),
	}
	v.Rows, v.Totals = countTable(st.Counts)
	for _, m := range st.Minutes {
		v.HourCompleted += m.Completed
		v.HourFailed += m.Failed
		v.HourCancelled += m.Cancelled
	}
	if d.cfg.Depth != nil {
		if depth, err := d.cfg.Depth(ctx); err != nil {
			v.DepthError = "unknown: Redis did not answer"
			d.log.Warn("dashboard: queue depth unknown", "err", err)
		} else {
			v.Depth = &depth
		}
	}
	if keys, err := d.cfg.Service.FlowKeys(ctx, jobs.Operator, "", 1000); err != nil {
		v.FlowKeysError = "unknown: Redis did not answer"
		d.log.Warn("dashboard: flow keys unknown", "err", err)
	} else {
		for _, k := range keys {
			if k.Paused {
				v.PausedKeys = append(v.PausedKeys, k)
			}
		}
	}
	if d.cfg.Schedules != nil {
		for _, e := range d.cfg.Schedules.Schedules {
			spec := e.Spec(d.cfg.PublicURL)
			method := spec.Method
			if method == "" {
				method = http.MethodPost
			}
			v.Schedules = append(v.Schedules, scheduleRow{Name: e.Name, Cron: e.Cron, Method: method, Destination: spec.Destination})
		}
	}
	return d.render(c, http.StatusOK, "overview", pageData{Title: "Overview", Nav: "overview", Flash: takeFlash(c), Page: v})
}

// countTable pivots the counts: one row per type (sorted), one column per
// status, and the totals per status.
func countTable(counts []jobs.StatusTypeCount) ([]countRow, []int64) {
	col := make(map[models.Status]int, len(models.Statuses))
	for i, s := range models.Statuses {
		col[s] = i
	}
	byType := map[string]*countRow{}
	var order []string
	totals := make([]int64, len(models.Statuses))
	for _, n := range counts {
		i, ok := col[n.Status]
		if !ok {
			continue
		}
		r := byType[n.Type]
		if r == nil {
			r = &countRow{Type: n.Type, Counts: make([]int64, len(models.Statuses))}
			byType[n.Type] = r
			order = append(order, n.Type)
		}
		r.Counts[i] += n.Count
		r.Total += n.Count
		totals[i] += n.Count
	}
	slices.Sort(order)
	rows := make([]countRow, len(order))
	for i, t := range order {
		rows[i] = *byType[t]
	}
	return rows, totals
}

// filter is the jobs list's filter, as the form and the query string
// carry it.
type filter struct {
	Status, Type, User, Parent, From, To, Error string
}

// filterFields are the form fields of a filter.
var filterFields = []string{"status", "type", "user", "parent", "from", "to", "error"}

// readFilter reads a filter with get (a query or form lookup).
func readFilter(get func(string) string) filter {
	v := make([]string, len(filterFields))
	for i, f := range filterFields {
		v[i] = strings.TrimSpace(get(f))
	}
	return filter{Status: v[0], Type: v[1], User: v[2], Parent: v[3], From: v[4], To: v[5], Error: v[6]}
}

// values is the filter as query parameters, empty ones left out.
func (f filter) values() url.Values {
	q := url.Values{}
	for i, v := range []string{f.Status, f.Type, f.User, f.Parent, f.From, f.To, f.Error} {
		if v != "" {
			q.Set(filterFields[i], v)
		}
	}
	return q
}

// Query is the filter as a query string, with a leading '?' unless empty.
func (f filter) Query() string {
	if q := f.values().Encode(); q != "" {
		return "?" + q
	}
	return ""
}

// request turns the filter into the Service's list request, as the
// Operator sees every user's jobs.
func (f filter) request() (jobs.ListRequest, error) {
	req := jobs.ListRequest{UserID: jobs.Operator, Status: models.Status(f.Status), Type: f.Type, User: f.User, ErrorContains: f.Error}
	if f.Parent != "" {
		id, err := strconv.ParseInt(strings.TrimPrefix(f.Parent, "#"), 10, 64)
		if err != nil || id <= 0 {
			return req, &jobs.ValidationError{Code: handlers.CodeInvalidParent, Message: "parent must be a job id (a positive integer)"}
		}
		req.ParentID = id
	}
	var err error
	if req.CreatedFrom, err = parseTime("from", f.From); err != nil {
		return req, err
	}
	if req.CreatedTo, err = parseTime("to", f.To); err != nil {
		return req, err
	}
	return req, nil
}

// timeLayouts are the forms a filter's times may take (UTC unless they
// say otherwise): the browser's datetime-local, RFC 3339, a date.
var timeLayouts = []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339, "2006-01-02 15:04", "2006-01-02"}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &jobs.ValidationError{Code: handlers.CodeInvalidTimeRange,
		Message: field + " must be a UTC time such as 2026-12-02T16:30 (or RFC 3339)"}
}

// jobsView is the jobs list page.
type jobsView struct {
	Filter   filter
	Statuses []models.Status
	Types    []string
	Jobs     []models.Job
	// NextQuery fetches the next page; empty on the last one.
	NextQuery string
	// FirstQuery goes back to the newest page.
	FirstQuery string
	Paged      bool
	// BulkStatus is the status a bulk retry picks: failed unless the
	// filter says cancelled.
	BulkStatus string
}

// jobsList lists jobs, newest first, filtered and a page at a time.
func (d *dashboard) jobsList(c echo.Context) error {
	f := readFilter(c.QueryParam)
	v := jobsView{Filter: f, Statuses: models.Statuses, Types: d.cfg.Service.Registry().Types(), FirstQuery: f.Query(), BulkStatus: string(models.StatusFailed)}
	if f.Status == string(models.StatusCancelled) {
		v.BulkStatus = f.Status
	}
	data := pageData{Title: "Jobs", Nav: "jobs", Flash: takeFlash(c), Page: &v}
	req, err := f.request()
	if err == nil {
		req.Cursor = c.QueryParam("cursor")
		req.Limit = 50
		v.Paged = req.Cursor != ""
		var page jobs.ListPage
		if page, err = d.cfg.Service.List(c.Request().Context(), req); err == nil {
			v.Jobs = page.Jobs
			if page.NextCursor != "" {
				q := f.values()
				q.Set("cursor", page.NextCursor)
				v.NextQuery = "?" + q.Encode()
			}
			return d.render(c, http.StatusOK, "jobs", data)
		}
	}
	code, status, msg := d.describeError(err)
	data.Flash = &flash{Kind: "error", Code: code, Message: msg}
	return d.render(c, status, "jobs", data)
}

// jobView is the job detail page.
type jobView struct {
	Job         *models.Job
	Payload     string
	Result      string
	Checkpoint  string
	Attempts    []attemptRow
	Children    []*childNode
	ChildrenCut bool
	TraceParent string
	CanRetry    bool
	CanCancel   bool
}

// attemptRow is one finished attempt.
type attemptRow struct {
	models.JobAttempt
	// Took is how long it ran, empty when its start is unknown.
	Took string
}

// childNode is one job of the tree below a job.
type childNode struct {
	Job      models.Job
	Children []*childNode
}

// Bounds of the children tree on a job's page.
const (
	maxTreeDepth = 4
	maxTreeNodes = 300
)

// jobDetail shows one job.
func (d *dashboard) jobDetail(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return d.errorPage(c, jobs.ErrNotFound)
	}
	ctx := c.Request().Context()
	job, err := d.cfg.Service.Get(ctx, jobs.Operator, id)
	if err != nil {
		return d.errorPage(c, err)
	}
	attempts, err := d.cfg.Service.Attempts(ctx, jobs.Operator, id)
	if err != nil {
		return d.errorPage(c, err)
	}
	v := jobView{
		Job:         job,
		Payload:     prettyJSON(job.Payload),
		Result:      prettyJSON(job.Result),
		Checkpoint:  prettyJSON(job.Checkpoint),
		TraceParent: traceParent(job),
		CanRetry:    job.Status == models.StatusFailed || job.Status == models.StatusCancelled,
		CanCancel:   !job.Status.Finished(),
	}
	for _, a := range attempts {
		row := attemptRow{JobAttempt: a}
		if a.StartedAt != nil {
			row.Took = a.FinishedAt.Sub(*a.StartedAt).Round(time.Millisecond).String()
		}
		v.Attempts = append(v.Attempts, row)
	}
	budget := maxTreeNodes
	if v.Children, err = d.children(ctx, id, maxTreeDepth, &budget); err != nil {
		return d.errorPage(c, err)
	}
	v.ChildrenCut = budget <= 0
	return d.render(c, http.StatusOK, "job", pageData{Title: "Job " + itoa(id), Nav: "jobs", Flash: takeFlash(c), Page: v})
}

// children lists the tree below job id, depth levels deep, at most
// *budget jobs in all.
func (d *dashboard) children(ctx context.Context, id int64, depth int, budget *int) ([]*childNode, error) {
	if depth == 0 || *budget <= 0 {
		return nil, nil
	}
	page, err := d.cfg.Service.List(ctx, jobs.ListRequest{UserID: jobs.Operator, ParentID: id, Limit: min(jobs.MaxListLimit, *budget)})
	if err != nil {
		return nil, err
	}
	*budget -= len(page.Jobs)
	if page.NextCursor != "" {
		*budget = 0
	}
	out := make([]*childNode, 0, len(page.Jobs))
	for _, j := range page.Jobs {
		if j.ParentID == nil || *j.ParentID != id {
			continue // not a child: never loop on a filter not applied
		}
		n := &childNode{Job: j}
		if n.Children, err = d.children(ctx, j.ID, depth-1, budget); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// prettyJSON indents a JSON document; empty for none.
func prettyJSON(doc models.JSON) string {
	if len(doc) == 0 || string(doc) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, doc, "", "  "); err != nil {
		return string(doc)
	}
	return buf.String()
}

// traceParent is the W3C traceparent the job was created under, or "".
func traceParent(job *models.Job) string { return job.TraceParent }
