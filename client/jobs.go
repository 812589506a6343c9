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
	q := url.Values{}
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	if o.Type != "" {
		q.Set("type", o.Type)
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	u := c.base + "/api/jobs"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var page ListPage
	err := c.call(ctx, http.MethodGet, u, &page)
	return page, err
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
