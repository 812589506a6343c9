//go:build chaos

package app

import (
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/jobs"
)

// chaosBuild reports whether this binary was built with -tags chaos, and
// so contains the chaos suite's job type.
const chaosBuild = true

// registerChaosTasks registers chaos_record (JOBHOOK_CHAOS_TASKS=true).
func registerChaosTasks(reg *jobs.Registry, db *gorm.DB) error {
	return chaostask.Register(reg, db)
}
