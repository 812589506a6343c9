package app

import (
	"errors"

	"go.opentelemetry.io/otel/trace"
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs"
)

// Option adjusts what New builds.
type Option func(*options)

type options struct {
	jobTypes []func(*jobs.Registry, *gorm.DB) error
	// tracerProvider replaces the one from the OTEL_* variables.
	tracerProvider trace.TracerProvider
}

// WithJobTypes registers more job types, after the built-in ones, with
// the app's database at hand. Tests use it to run a test job type (such as
// internal/chaostask's chaos_record) in-process in any build; serve
// registers chaos_record only in a binary built with -tags chaos.
func WithJobTypes(register func(reg *jobs.Registry, db *gorm.DB) error) Option {
	return func(o *options) { o.jobTypes = append(o.jobTypes, register) }
}

// errNoChaosBuild refuses JOBHOOK_CHAOS_TASKS=true in a binary without
// chaos_record.
var errNoChaosBuild = errors.New("JOBHOOK_CHAOS_TASKS=true, but this binary was built without the chaos tag, so the test job type chaos_record is not in it: " +
	"build it with `go build -tags chaos -o jobhook ./cmd/jobhook`, or unset JOBHOOK_CHAOS_TASKS")
