//go:build !chaos

package app

import (
	"gorm.io/gorm"

	"github.com/jobhook/jobhook/jobs"
)

// chaosBuild reports whether this binary was built with -tags chaos, and
// so contains the chaos suite's job type.
const chaosBuild = false

// registerChaosTasks fails: chaos_record is compiled only with -tags chaos.
func registerChaosTasks(*jobs.Registry, *gorm.DB) error { return errNoChaosBuild }
