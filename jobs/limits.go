package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// FlowKeyer is implemented by handlers whose work is limited by external
// accounts or resources: an Instagram account, a Facebook Page, an AI
// model on one API key, a web host. FlowKeys computes, from a job's
// payload when the job is created, the flow keys the job's work counts
// against, such as "ig:17841400000000001" or "openai:3f2a9c:gpt-4o-mini".
// A key is a prefix naming the kind of resource, a colon and an id; it
// must never contain a secret (an API key is named by a hash of it).
//
// The engine enforces each key's limits (concurrency, rate) across every
// instance at claim time, so a job held back by a key costs no handler
// slot and no attempt, and pauses a key when a handler reports, with
// PauseFlow, that the provider asked it to wait.
type FlowKeyer interface {
	FlowKeys(payload json.RawMessage) ([]string, error)
}

// FlowPauseError is a handler's report that the provider limits the work
// of Key: the job is deferred (the attempt does not count) and every job
// on Key waits, without running, until After has passed.
type FlowPauseError struct {
	Err    error
	Key    string
	After  time.Duration
	Reason string
}

// Error names the key, the wait and the reason.
func (e *FlowPauseError) Error() string {
	return fmt.Sprintf("%v (%s paused for %s: %s)", e.Err, e.Key, e.After, e.Reason)
}

// Unwrap returns the underlying error.
func (e *FlowPauseError) Unwrap() error { return e.Err }

// PauseFlow reports that the provider limits the work of flow key: it
// says access returns after d (the handler adds its margin), for reason
// (such as "business use case usage 97%"). The job is deferred as with
// RetryAfter(err, d), and every other job on key waits without running
// until then, while other keys keep running. Permanent wins over
// PauseFlow. PauseFlow(nil, …) is nil.
func PauseFlow(err error, key string, d time.Duration, reason string) error {
	if err == nil {
		return nil
	}
	if d < 0 {
		d = 0
	}
	return &FlowPauseError{Err: err, Key: key, After: d, Reason: reason}
}

// flowPauseOf returns the pause a handler's error asks for, if any.
func flowPauseOf(err error) (*FlowPauseError, bool) {
	var p *FlowPauseError
	if errors.As(err, &p) && p.Key != "" {
		return p, true
	}
	return nil, false
}

// ReportFlowPause pauses flow key for d, from inside Handle, whatever the
// attempt's outcome: a handler whose call succeeded but whose provider
// said the key is near its limit (usage headers at 95%) reports it so the
// key's next jobs wait instead of being refused. Outside a handler's
// context it does nothing and returns ErrNoJob.
func ReportFlowPause(ctx context.Context, key string, d time.Duration, reason string) error {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return ErrNoJob
	}
	if key == "" {
		return fmt.Errorf("report flow pause: empty key")
	}
	return jc.w.pauseFlow(ctx, key, max(d, 0), reason)
}

// pauseFlow records that key waits for d. The engine's enforcement of
// pauses lands with the flow-key queue; until then a pause defers only
// the job that reported it.
func (w *Worker) pauseFlow(ctx context.Context, key string, d time.Duration, reason string) error {
	return nil
}
