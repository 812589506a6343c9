package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/jobhook/jobhook/models"
)

// Options configures TriggerWorker.
type Options struct {
	// URL is the server's base URL, such as https://jobs.example.com (its
	// PUBLIC_URL). Required.
	URL string
	// WorkerSecret is the server's WORKER_SECRET, sent as
	// "Authorization: Bearer <secret>" on every call. Required.
	WorkerSecret string
	// WaitForJobID, when positive, makes TriggerWorker wait until that job
	// is finished (completed, failed or cancelled), calling the worker
	// again while the job waits to run. Zero: one call, no waiting.
	WaitForJobID int64
	// Timeout bounds the whole call, waiting included. Defaults to
	// DefaultTimeout.
	Timeout time.Duration
	// PollInterval is the shortest time between two worker calls and
	// between two reads of the waited-for job. Defaults to
	// DefaultPollInterval.
	PollInterval time.Duration
	// HTTPClient sends the requests. Defaults to http.DefaultClient.
	HTTPClient *http.Client
}

// Result is what TriggerWorker saw.
type Result struct {
	// Success is true when the worker answered and, with WaitForJobID,
	// the job completed.
	Success bool
	// Message says what happened, in a sentence for people, such as
	// "job 42 completed" or "job 42 failed: provider said no".
	Message string
	// JobID is the waited-for job; zero without WaitForJobID.
	JobID int64
	// Result is the waited-for job's result once it completed.
	Result json.RawMessage
	// Job is the waited-for job as last read from the server.
	Job *Job
	// Drains are the summaries of the worker calls made, in order.
	Drains []DrainSummary
}

// TriggerWorker calls the server's worker endpoint (POST /api/workers)
// once, as QStash or a cron would. With WaitForJobID it first reads the
// job (ErrJobNotFound when the server has none with that id), then waits
// until the job is finished, reading it from the server every
// PollInterval and calling the worker again when the job is due: never
// sooner than PollInterval after the previous call, and never before the
// job's next run time (a retry's backoff, a scheduled time) or, for a
// running job, before its lease expires.
//
// It returns an error wrapping ErrJobFailed when the job failed or was
// cancelled, context.DeadlineExceeded when Timeout passed first, an
// *APIError when the server refused a call, and the transport's error when
// it could not be reached; the Result's Message says the same for people.
func TriggerWorker(ctx context.Context, o Options) (Result, error) {
	res := Result{JobID: o.WaitForJobID}
	t, err := newTrigger(o)
	if err != nil {
		res.Message = err.Error()
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	fail := func(err error) (Result, error) {
		res.Message = err.Error()
		return res, err
	}

	if o.WaitForJobID == 0 {
		sum, err := t.callWorker(ctx)
		if err != nil {
			return fail(t.explain(ctx, err, nil))
		}
		res.Drains = append(res.Drains, sum)
		res.Success = true
		res.Message = "the worker ran: " + sum.String()
		return res, nil
	}

	job, err := t.getJob(ctx)
	if err != nil {
		return fail(t.explain(ctx, err, nil))
	}
	res.Job = job
	var lastCall time.Time
	call := func() error {
		sum, err := t.callWorker(ctx)
		lastCall = time.Now()
		if err != nil {
			return err
		}
		res.Drains = append(res.Drains, sum)
		return nil
	}
	if err := call(); err != nil {
		return fail(t.explain(ctx, err, job))
	}
	for {
		if job, err = t.getJob(ctx); err != nil {
			return fail(t.explain(ctx, err, res.Job))
		}
		res.Job = job
		if job.Status.Finished() {
			return t.finished(res)
		}
		now := time.Now()
		wake := now.Add(t.o.PollInterval)
		if due, ok := t.nextCall(job, lastCall); ok {
			if !now.Before(due) {
				if err := call(); err != nil {
					return fail(t.explain(ctx, err, job))
				}
				continue
			}
			if due.Before(wake) {
				wake = due
			}
		}
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			timer.Stop()
			return fail(t.explain(ctx, ctx.Err(), job))
		case <-timer.C:
		}
	}
}

// trigger is one TriggerWorker call's settings.
type trigger struct {
	o                 Options
	workerURL, jobURL string
}

func newTrigger(o Options) (*trigger, error) {
	base, err := baseURLOf(o.URL)
	switch {
	case err != nil:
		return nil, err
	case o.WorkerSecret == "":
		return nil, errors.New("the worker secret is required")
	case o.WaitForJobID < 0:
		return nil, fmt.Errorf("the job id to wait for must be positive, not %d", o.WaitForJobID)
	case o.Timeout < 0:
		return nil, fmt.Errorf("the timeout must be positive, not %s", o.Timeout)
	case o.PollInterval < 0:
		return nil, fmt.Errorf("the poll interval must be positive, not %s", o.PollInterval)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	return &trigger{
		o:         o,
		workerURL: base + "/api/workers",
		jobURL:    base + "/api/workers/jobs/" + strconv.FormatInt(o.WaitForJobID, 10),
	}, nil
}

// nextCall returns when the worker may next be called for job: when the
// job can run (its next run time; a running job's lease expiry, in case
// its worker died), and not sooner than PollInterval after the last call.
// ok is false when calling would not help (a running job with a lease).
func (t *trigger) nextCall(job *Job, lastCall time.Time) (time.Time, bool) {
	var due time.Time
	switch job.Status {
	case models.StatusPending, models.StatusScheduled:
		due = job.NextRunAt
	case models.StatusProcessing:
		if job.LeaseExpiresAt == nil {
			return time.Time{}, false
		}
		due = *job.LeaseExpiresAt
	default:
		return time.Time{}, false
	}
	if earliest := lastCall.Add(t.o.PollInterval); due.Before(earliest) {
		due = earliest
	}
	return due, true
}

// finished fills the Result of a finished job.
func (t *trigger) finished(res Result) (Result, error) {
	job := res.Job
	if job.Status == models.StatusCompleted {
		res.Success = true
		res.Result = json.RawMessage(job.Result)
		res.Message = fmt.Sprintf("job %d completed", job.ID)
		return res, nil
	}
	res.Message = fmt.Sprintf("job %d %s", job.ID, job.Status)
	if job.Error != "" {
		res.Message += ": " + job.Error
	}
	return res, &jobError{msg: res.Message, is: ErrJobFailed}
}

// explain turns a failed step into the error TriggerWorker returns: a
// timeout names the job's last known status.
func (t *trigger) explain(ctx context.Context, err error, job *Job) error {
	if ctx.Err() == nil || (!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)) {
		return err
	}
	what := "the worker call"
	if t.o.WaitForJobID != 0 {
		what = fmt.Sprintf("job %d", t.o.WaitForJobID)
		if job != nil {
			what += " still " + string(job.Status)
		}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &jobError{msg: fmt.Sprintf("%s after %s (timed out)", what, t.o.Timeout), is: context.DeadlineExceeded}
	}
	return &jobError{msg: what + ": stopped", is: ctx.Err()}
}

// jobError is an error whose text is a plain sentence and which matches a
// sentinel with errors.Is.
type jobError struct {
	msg string
	is  error
}

func (e *jobError) Error() string { return e.msg }
func (e *jobError) Unwrap() error { return e.is }

// callWorker runs one POST /api/workers.
func (t *trigger) callWorker(ctx context.Context) (DrainSummary, error) {
	body, err := t.do(ctx, http.MethodPost, t.workerURL, []byte(`{"trigger":"manual"}`))
	if err != nil {
		return DrainSummary{}, err
	}
	var sum DrainSummary
	if err := json.Unmarshal(body, &sum); err != nil {
		return DrainSummary{}, fmt.Errorf("POST %s: unreadable answer: %w", t.workerURL, err)
	}
	return sum, nil
}

// getJob reads the waited-for job.
func (t *trigger) getJob(ctx context.Context) (*Job, error) {
	body, err := t.do(ctx, http.MethodGet, t.jobURL, nil)
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound && ae.Code == "job_not_found":
		return nil, &jobError{msg: fmt.Sprintf("job %d was not found", t.o.WaitForJobID), is: ErrJobNotFound}
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		return nil, fmt.Errorf("the server at %s cannot show jobs to a worker (no GET /api/workers/jobs/:id; is it an older jobhook?): %w", t.o.URL, err)
	case err != nil:
		return nil, err
	}
	var job Job
	if err := json.Unmarshal(body, &job); err != nil {
		return nil, fmt.Errorf("GET %s: unreadable job: %w", t.jobURL, err)
	}
	return &job, nil
}

// maxAnswer bounds the answers read: a job with its payload, result and
// history.
const maxAnswer = 16 << 20

// do sends one request with the worker secret.
func (t *trigger) do(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	return send(ctx, t.o.HTTPClient, t.o.WorkerSecret, method, u, body)
}

// send sends one request with a bearer token and returns the body of a
// 200 or 201, or an *APIError for any other status.
func send(ctx context.Context, hc *http.Client, token, method, u string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("%s %s: %w", method, u, apiError(resp.StatusCode, raw))
	}
	return raw, nil
}

// String summarises a drain: "claimed 2, completed 1, retried 1, failed 0,
// remaining 3".
func (s DrainSummary) String() string {
	return fmt.Sprintf("claimed %d, completed %d, retried %d, failed %d, remaining %d", s.Claimed, s.Completed, s.Retried, s.Failed, s.Remaining)
}
