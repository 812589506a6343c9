// Package client calls a jobhook server over HTTP from Go.
//
// TriggerWorker calls the worker endpoint (POST /api/workers) as QStash or
// a plain cron would, and can wait until one job is finished, reading the
// job from the server (GET /api/workers/jobs/:id) — never from a database.
// It needs only the server's URL and its WORKER_SECRET:
//
//	res, err := client.TriggerWorker(ctx, client.Options{
//		URL:          "https://jobs.example.com",
//		WorkerSecret: os.Getenv("WORKER_SECRET"),
//		WaitForJobID: 42,
//		Timeout:      time.Minute,
//	})
//
// While it waits it calls the worker at most once per PollInterval, and
// never before the job's next run time: a job waiting out a retry backoff
// is left alone until the backoff ends.
//
// JobsClient calls the jobs API (list, get, retry, cancel) with a bearer
// token; with the server's ADMIN_TOKEN it acts as the operator on every
// user's jobs, as `jobhook jobs` does:
//
//	jc, err := client.NewJobsClient("https://jobs.example.com", os.Getenv("ADMIN_TOKEN"), nil)
//	page, err := jc.List(ctx, client.ListOptions{Status: models.StatusFailed})
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jobhook/jobhook/models"
)

// Defaults of Options.
const (
	// DefaultTimeout bounds a TriggerWorker call, waiting included.
	DefaultTimeout = 2 * time.Minute
	// DefaultPollInterval is the shortest time between two worker calls,
	// and between two reads of the waited-for job.
	DefaultPollInterval = time.Second
)

// Job is a job as the server shows it: every field of the user API's
// GET /api/jobs/:id, secret payload fields redacted, with its finished
// attempts in History.
type Job struct {
	models.Job
	// History lists the job's finished attempts, oldest first.
	History []models.JobAttempt `json:"history"`
}

// DrainSummary is what one call of the worker endpoint did: the answer of
// POST /api/workers.
type DrainSummary struct {
	// Promoted counts scheduled and delayed jobs that became due.
	Promoted int `json:"promoted"`
	// Reenqueued counts pending jobs found missing from the queue.
	Reenqueued int `json:"reenqueued"`
	// Reaped counts processing jobs whose lease had expired.
	Reaped int `json:"reaped"`
	// Claimed counts the jobs the drain ran.
	Claimed int `json:"claimed"`
	// Completed, Retried and Failed count how the jobs it ran ended.
	Completed int `json:"completed"`
	Retried   int `json:"retried"`
	Failed    int `json:"failed"`
	// Skipped counts claimed ids whose job needed no run.
	Skipped int `json:"skipped"`
	// Released counts jobs given back unfinished at shutdown.
	Released int `json:"released"`
	// LeftForTime counts claimed jobs given back unrun because their
	// timeout did not fit in the rest of the budget.
	LeftForTime int `json:"leftForTime"`
	// Unrecorded counts outcomes not written before the drain answered
	// (a failed or hung backend); the reaper recovers those jobs.
	Unrecorded int `json:"unrecorded"`
	// Snoozed counts jobs that ran and now wait for their children.
	Snoozed int `json:"snoozed"`
	// Remaining is how many jobs were pending when the drain ended.
	Remaining int64 `json:"remaining"`
	// DurationMs is how long the drain took.
	DurationMs int64 `json:"durationMs"`
}

// Errors TriggerWorker returns, wrapped with what it was doing; test them
// with errors.Is.
var (
	// ErrJobFailed: the waited-for job ended failed or cancelled. The
	// Result's Job and Message say why.
	ErrJobFailed = errors.New("job did not complete")
	// ErrJobNotFound: the server has no job with the id waited for.
	ErrJobNotFound = errors.New("job not found")
)

// APIError is a refusal from the server: its status and the stable code
// and message of its JSON error body.
type APIError struct {
	// Status is the HTTP status, such as 401.
	Status int
	// Code is the error code, such as "invalid_worker_auth"; empty when
	// the body was not jobhook's JSON error.
	Code string
	// Message is the server's message for people.
	Message string
}

// Error returns "401 invalid_worker_auth: the worker secret is wrong".
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// apiError reads a refusal's JSON error body.
func apiError(status int, body []byte) *APIError {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	ae := &APIError{Status: status}
	if json.Unmarshal(body, &e) == nil {
		ae.Code, ae.Message = e.Error.Code, e.Error.Message
	}
	return ae
}
