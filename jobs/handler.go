package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jobhook/jobhook/models"
)

// Handler runs one job type. Handle gets a context that carries the job's
// timeout and returns the job's result as JSON, or an error. Wrap an error
// with Permanent to fail the job without further attempts, or with
// RetryAfter to ask for the next attempt no sooner than a given delay.
//
// Delivery is at least once: a handler must be safe to run again for the
// same job.
type Handler interface {
	Handle(ctx context.Context, job *models.Job) (json.RawMessage, error)
}

// HandlerFunc lets a plain function serve as a Handler.
type HandlerFunc func(ctx context.Context, job *models.Job) (json.RawMessage, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	return f(ctx, job)
}

// PayloadValidator is implemented by handlers that check a payload when the
// job is created, so that a bad payload is refused with 400 and never stored.
// The error should be a *ValidationError (or wrap one) naming the field.
type PayloadValidator interface {
	ValidatePayload(payload json.RawMessage) error
}

// TimeoutHandler is implemented by handlers whose jobs need a timeout other
// than the worker's default.
type TimeoutHandler interface {
	Timeout() time.Duration
}

// WaitLimiter is implemented by handlers whose jobs may wait (deferred
// with RetryAfter, snoozed) for a time other than the engine's
// DefaultMaxWait: a job created without an expiry expires MaxWait after
// its scheduled time, or its creation. A zero MaxWait is the default.
type WaitLimiter interface {
	MaxWait() time.Duration
}

// Registry maps job types to their handlers. It is safe for concurrent use.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{handlers: map[string]Handler{}}
}

// Register adds the handler for a job type. Registering an empty type, a nil
// handler or a type twice is an error.
func (r *Registry) Register(jobType string, h Handler) error {
	if jobType == "" {
		return fmt.Errorf("jobs: register: empty job type")
	}
	if h == nil {
		return fmt.Errorf("jobs: register %q: nil handler", jobType)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[jobType]; dup {
		return fmt.Errorf("jobs: register %q: type already registered", jobType)
	}
	r.handlers[jobType] = h
	return nil
}

// MustRegister is Register that panics on error, for start-up wiring.
func (r *Registry) MustRegister(jobType string, h Handler) {
	if err := r.Register(jobType, h); err != nil {
		panic(err)
	}
}

// Lookup returns the handler for a job type.
func (r *Registry) Lookup(jobType string) (Handler, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[jobType]
	return h, ok
}

// Types returns the registered job types, sorted.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.handlers))
	for t := range r.handlers {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
