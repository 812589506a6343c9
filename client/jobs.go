package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jobhook/jobhook/models"
)

// JobsClient calls the jobs API (/api/jobs…) with a bearer token: a
// user's JWT, who sees only their own jobs, or the server's ADMIN_TOKEN,
// whose caller is the operator and sees and acts on every user's jobs.
// Every method returns an *APIError when the server refuses the call
// (test its Code, such as "job_not_found") and the transport's error when
// the server cannot be reached.
type JobsClient struct {
	base   string
	token  string
	client *http.Client
}

// NewJobsClient returns a client of the server at baseURL (an absolute
// http(s) URL, such as https://jobs.example.com) sending token as
// "Authorization: Bearer <token>". httpClient nil means
// http.DefaultClient.
func NewJobsClient(baseURL, token string, httpClient *http.Client) (*JobsClient, error) {
	base, err := baseURLOf(baseURL)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("the bearer token is required")
	}
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &JobsClient{base: base, token: token, client: httpClient}, nil
}

// baseURLOf checks a server's base URL and drops its trailing slashes.
func baseURLOf(raw string) (string, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	switch {
	case raw == "":
		return "", errors.New("the server's URL is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", fmt.Errorf("the server's URL %q is not an absolute http(s) URL", raw)
	}
	return u.String(), nil
}

// ListOptions filters and pages GET /api/jobs. Zero fields do not filter.
type ListOptions struct {
	// Status keeps jobs in this status.
	Status models.Status
	// Type keeps jobs of this type.
	Type string
	// User keeps one user's jobs (an operator's filter).
	User string
	// Parent keeps the children of this job.
	Parent int64
	// CreatedFrom and CreatedTo keep the jobs created in [CreatedFrom,
	// CreatedTo).
	CreatedFrom, CreatedTo time.Time
	// Error keeps the jobs whose error holds this text, in any case.
	Error string
	// Cursor is the NextCursor of the previous page; empty for the first.
	Cursor string
	// Limit is the page size, 1 to 100; zero is the server's default (20).
	Limit int
}

// ListPage is one page of GET /api/jobs, newest first.
type ListPage struct {
	// Jobs are the page's jobs, secret payload fields redacted.
	Jobs []models.Job `json:"jobs"`
	// NextCursor fetches the next page; empty on the last one.
	NextCursor string `json:"nextCursor,omitempty"`
}

// List returns one page of jobs (GET /api/jobs).
func (c *JobsClient) List(ctx context.Context, o ListOptions) (ListPage, error) {
	q := o.filters()
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var page ListPage
	err := c.call(ctx, http.MethodGet, withQuery(c.base+"/api/jobs", q), &page)
	return page, err
}

// filters are the query parameters of o's filters (not its page).
func (o ListOptions) filters() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("status", string(o.Status))
	set("type", o.Type)
	set("user", o.User)
	set("error", o.Error)
	if o.Parent != 0 {
		q.Set("parent", strconv.FormatInt(o.Parent, 10))
	}
	if !o.CreatedFrom.IsZero() {
		q.Set("createdFrom", o.CreatedFrom.UTC().Format(time.RFC3339Nano))
	}
	if !o.CreatedTo.IsZero() {
		q.Set("createdTo", o.CreatedTo.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// withQuery is u with q, when q has any values.
func withQuery(u string, q url.Values) string {
	if len(q) == 0 {
		return u
	}
	return u + "?" + q.Encode()
}

// RetryMatching retries the failed jobs o's filters match (cancelled ones
// when o.Status is cancelled) with POST /api/jobs/retry: the newest 1,000
// per call; BulkRetry.More says to call again. o's Cursor and Limit are
// not sent.
func (c *JobsClient) RetryMatching(ctx context.Context, o ListOptions) (BulkRetry, error) {
	var out BulkRetry
	err := c.call(ctx, http.MethodPost, withQuery(c.base+"/api/jobs/retry", o.filters()), &out)
	return out, err
}

// BulkRetry is the answer of POST /api/jobs/retry.
type BulkRetry struct {
	// Retried are the jobs retried, oldest first.
	Retried []int64 `json:"retried"`
	// Failed are the jobs that matched and could not be retried.
	Failed []RetryFailure `json:"failed"`
	// More says that more jobs matched than one call retries.
	More bool `json:"more"`
}

// RetryFailure is a job a bulk retry could not retry, with the code of
// the reason (job_not_retryable, job_not_found).
type RetryFailure struct {
	ID      int64  `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Stats are the counts GET /api/jobs/stats returns.
type Stats struct {
	// At is when the server read them.
	At time.Time `json:"at"`
	// SinceSeconds is the window of the finished counts, in seconds.
	SinceSeconds int64 `json:"sinceSeconds"`
	// Counts are the unfinished jobs and those finished within the window,
	// by status and type.
	Counts []StatusTypeCount `json:"counts"`
	// Minutes are the jobs finished in each of the last 60 minutes,
	// oldest first.
	Minutes []MinuteCount `json:"minutes"`
}

// StatusTypeCount is how many jobs of one type are in one status.
type StatusTypeCount struct {
	Status models.Status `json:"status"`
	Type   string        `json:"type"`
	Count  int64         `json:"count"`
}

// MinuteCount is how many jobs reached each final status in the minute
// that starts at Start.
type MinuteCount struct {
	Start     time.Time `json:"start"`
	Completed int64     `json:"completed"`
	Failed    int64     `json:"failed"`
	Cancelled int64     `json:"cancelled"`
}

// Stats counts the caller's jobs (an operator's: every user's) by status
// and type, the finished ones within since (zero: the server's default,
// 24 h), with the jobs finished per minute over the last hour.
func (c *JobsClient) Stats(ctx context.Context, since time.Duration) (Stats, error) {
	q := url.Values{}
	if since != 0 {
		q.Set("since", since.String())
	}
	var st Stats
	err := c.call(ctx, http.MethodGet, withQuery(c.base+"/api/jobs/stats", q), &st)
	return st, err
}

// Get returns one job with its history of finished attempts
// (GET /api/jobs/:id).
func (c *JobsClient) Get(ctx context.Context, id int64) (*Job, error) {
	var job Job
	if err := c.call(ctx, http.MethodGet, c.jobURL(id, ""), &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// Retry re-queues a failed or cancelled job with a fresh attempt budget
// (POST /api/jobs/:id/retry) and returns it, pending again. A job in
// another status is a 409 *APIError.
func (c *JobsClient) Retry(ctx context.Context, id int64) (*models.Job, error) {
	return c.act(ctx, id, "/retry")
}

// Cancel cancels an unfinished job and its unfinished children
// (POST /api/jobs/:id/cancel) and returns it. A finished job is a 409
// *APIError with the code "job_not_cancellable".
func (c *JobsClient) Cancel(ctx context.Context, id int64) (*models.Job, error) {
	return c.act(ctx, id, "/cancel")
}

// act posts to one of a job's action routes and reads the job answered.
func (c *JobsClient) act(ctx context.Context, id int64, action string) (*models.Job, error) {
	var job models.Job
	if err := c.call(ctx, http.MethodPost, c.jobURL(id, action), &job); err != nil {
		return nil, err
	}
	return &job, nil
}

func (c *JobsClient) jobURL(id int64, action string) string {
	return c.base + "/api/jobs/" + strconv.FormatInt(id, 10) + action
}

// call sends one request and decodes the 200 answer into out.
func (c *JobsClient) call(ctx context.Context, method, u string, out any) error {
	var body []byte
	if method == http.MethodPost {
		body = []byte("{}")
	}
	raw, err := send(ctx, c.client, c.token, method, u, body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: unreadable answer: %w", method, u, err)
	}
	return nil
}
