// Package tasks holds what each job type does. There is one file per job
// type; each defines the type's name as a TypeXxx constant, a typed payload,
// and a handler that implements jobs.Handler, usually together with
// jobs.PayloadValidator (so a bad payload is refused when the job is
// created) and jobs.TimeoutHandler (so the job type owns its timeout).
//
// Handlers steer retries through their errors: jobs.Permanent for failures
// that another attempt cannot fix, jobs.RetryAfter when the remote side asks
// for a delay, and a plain error for everything transient. Delivery is at
// least once, so every handler is safe to run again for the same job.
package tasks
