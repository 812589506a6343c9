// Package trigger calls a jobhook server's worker endpoint, as QStash or a
// plain cron would, and can wait for one job to finish — the seed's
// triggerWorker({waitForJobId, timeoutMs}).
package trigger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// Options configures Run.
type Options struct {
	// WorkerURL is the server's POST /api/workers URL.
	WorkerURL string
	// WorkerSecret is sent as "Authorization: Bearer <secret>".
	WorkerSecret string
	// WaitJobID, when set, makes Run wait until that job is finished.
	WaitJobID int64
	// Timeout bounds the whole run. Defaults to 2 minutes.
	Timeout time.Duration
	// Lookup reads a job by id (from the database); required with WaitJobID.
	Lookup func(ctx context.Context, id int64) (*models.Job, error)
	// PollInterval is how often a waited-for job is read. Defaults to 200ms.
	PollInterval time.Duration
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
}

// Result is what Run saw.
type Result struct {
	// Drains are the summaries of the worker calls made.
	Drains []jobs.DrainSummary
	// Job is the waited-for job in its final state, if any.
	Job *models.Job
}

// ErrJobFailed is returned when the waited-for job ends failed or
// cancelled; the Result's Job says why.
var ErrJobFailed = errors.New("job did not complete")

// Run calls the worker endpoint once; with WaitJobID it then waits for the
// job to finish, calling the endpoint again whenever a drain ends with the
// job still waiting to run. It returns ErrJobFailed when the job failed or
// was cancelled, and context.DeadlineExceeded on timeout.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.WaitJobID != 0 && o.Lookup == nil {
		return Result{}, errors.New("trigger: waiting for a job needs a Lookup")
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var res Result
	drainDone := make(chan error, 1)
	drain := func() {
		go func() {
			sum, err := call(ctx, o)
			if err == nil {
				res.Drains = append(res.Drains, sum)
			}
			drainDone <- err
		}()
	}
	drain()
	if o.WaitJobID == 0 {
		err := <-drainDone
		return res, err
	}
	draining := true
	tick := time.NewTicker(o.PollInterval)
	defer tick.Stop()
	for {
		job, err := o.Lookup(ctx, o.WaitJobID)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			if draining {
				<-drainDone
			}
			return res, fmt.Errorf("trigger: read job %d: %w", o.WaitJobID, err)
		}
		if job != nil && job.Status.Finished() {
			if draining {
				<-drainDone
			}
			res.Job = job
			if job.Status != models.StatusCompleted {
				return res, fmt.Errorf("%w: job %d is %s: %s", ErrJobFailed, job.ID, job.Status, job.Error)
			}
			return res, nil
		}
		// A drain ended without finishing the job (a retry in backoff, or
		// claimed elsewhere): call again while it waits, judging from a
		// fresh read of the job.
		if !draining && job != nil && job.Status == models.StatusPending {
			draining = true
			drain()
		}
		select {
		case <-ctx.Done():
			if draining {
				<-drainDone
			}
			status := "unknown"
			if job != nil {
				status = string(job.Status)
			}
			return res, fmt.Errorf("trigger: job %d still %s after %s: %w", o.WaitJobID, status, o.Timeout, context.DeadlineExceeded)
		case err := <-drainDone:
			draining = false
			if err != nil {
				return res, err
			}
		case <-tick.C:
		}
	}
}

func call(ctx context.Context, o Options) (jobs.DrainSummary, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.WorkerURL, bytes.NewReader([]byte(`{"trigger":"manual"}`)))
	if err != nil {
		return jobs.DrainSummary{}, fmt.Errorf("trigger: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+o.WorkerSecret)
	resp, err := o.HTTPClient.Do(req)
	if err != nil {
		return jobs.DrainSummary{}, fmt.Errorf("trigger: call %s: %w", o.WorkerURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return jobs.DrainSummary{}, fmt.Errorf("trigger: %s answered %d %s: %s", o.WorkerURL, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return jobs.DrainSummary{}, fmt.Errorf("trigger: %s answered %d", o.WorkerURL, resp.StatusCode)
	}
	var sum jobs.DrainSummary
	if err := json.Unmarshal(body, &sum); err != nil {
		return jobs.DrainSummary{}, fmt.Errorf("trigger: unreadable drain summary: %w", err)
	}
	return sum, nil
}
