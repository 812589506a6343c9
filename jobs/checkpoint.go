package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jobhook/jobhook/models"
)

// ErrLeaseLost is returned by SaveCheckpoint when the job is no longer this
// worker's: its lease expired and it was handed back, or it was cancelled.
// The handler should stop.
var ErrLeaseLost = errors.New("job lease lost")

// ErrNoJob is returned by SaveCheckpoint outside a handler's context.
var ErrNoJob = errors.New("no job in this context")

type jobContextKey struct{}

// jobContext is what a handler's context carries about its job.
type jobContext struct {
	w   *Worker
	job *models.Job
}

func withJobContext(ctx context.Context, jc *jobContext) context.Context {
	return context.WithValue(ctx, jobContextKey{}, jc)
}

// SaveCheckpoint stores v (as JSON) on the running job's row, so that its
// next attempt can resume from it instead of starting over: the job passed
// to Handle carries the last checkpoint saved (see LoadCheckpoint). A
// checkpoint is cleared when the job completes. Call it from inside
// Handle, with the context Handle was given.
func SaveCheckpoint(ctx context.Context, v any) error {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return ErrNoJob
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	saved, err := jc.w.store.SaveCheckpoint(ctx, fenceOf(jc.job), raw, jc.w.cfg.Clock.Now())
	if err != nil {
		return fmt.Errorf("save checkpoint of job %d: %w: %w", jc.job.ID, ErrUnavailable, err)
	}
	if !saved {
		return fmt.Errorf("save checkpoint of job %d: %w", jc.job.ID, ErrLeaseLost)
	}
	jc.job.Checkpoint = models.JSON(raw)
	return nil
}

// LoadCheckpoint decodes the job's last saved checkpoint into v and reports
// whether there was one.
func LoadCheckpoint(job *models.Job, v any) (bool, error) {
	if len(job.Checkpoint) == 0 || string(job.Checkpoint) == "null" {
		return false, nil
	}
	if err := json.Unmarshal(job.Checkpoint, v); err != nil {
		return false, fmt.Errorf("load checkpoint of job %d: %w", job.ID, err)
	}
	return true, nil
}
