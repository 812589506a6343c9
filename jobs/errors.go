package jobs

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotFound is returned when a job does not exist or belongs to another user.
var ErrNotFound = errors.New("job not found")

// ErrNotCancellable is returned when cancelling a job that has finished
// (completed, failed or cancelled).
var ErrNotCancellable = errors.New("job cannot be cancelled in its current status")

// ErrUnavailable wraps failures of the database or the queue, which the
// caller cannot fix by changing the request.
var ErrUnavailable = errors.New("backend unavailable")

// FieldError describes one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is returned when a request is invalid. Code is a stable,
// machine-readable error code such as "invalid_priority".
type ValidationError struct {
	Code    string
	Message string
	Fields  []FieldError
}

// Error returns the message and the field errors.
func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return e.Message
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return e.Message + " (" + strings.Join(parts, "; ") + ")"
}

func invalid(code, field, format string, args ...any) *ValidationError {
	msg := fmt.Sprintf(format, args...)
	e := &ValidationError{Code: code, Message: msg}
	if field != "" {
		e.Fields = []FieldError{{Field: field, Message: msg}}
	}
	return e
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as permanent: the job fails now, whatever attempts it
// has left. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterError asks for the next attempt no sooner than After.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}

// Unwrap returns the underlying error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter asks for the next attempt no sooner than d, as a provider's 429
// with Retry-After does. Waiting is not failing: the job is deferred and
// the attempt does not count against MaxAttempts, however many times in a
// row it is asked for (the history records it as "deferred", the job
// keeps err as its error). The wait is no shorter than the retry backoff
// of the attempt, and bounded by the job's expiry (expiresAt): a deferral
// whose next attempt would come after it fails the job. Permanent wins
// over RetryAfter. RetryAfter(nil, d) is nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	if d < 0 {
		d = 0
	}
	return &RetryAfterError{Err: err, After: d}
}

// retryAfterDelay returns the delay asked for with RetryAfter or
// PauseFlow, if any.
func retryAfterDelay(err error) (time.Duration, bool) {
	if p, ok := flowPauseOf(err); ok {
		return p.After, true
	}
	var r *RetryAfterError
	if errors.As(err, &r) {
		return r.After, true
	}
	return 0, false
}
