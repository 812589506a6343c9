package app

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

// TestDrainBudgetMustFitEveryJobType: the default DRAIN_BUDGET fits every
// job type of tasks/ with room; one that does not fit some type's timeout
// is refused, naming the types and the least budget that fits.
func TestDrainBudgetMustFitEveryJobType(t *testing.T) {
	cfg, err := config.FromEnv()
	require.NoError(t, err)
	reg := jobs.NewRegistry()
	require.NoError(t, tasks.Register(reg, tasks.Config{}))
	require.NoError(t, checkDrainBudget(reg, cfg), "the default budget fits every type")

	longest := cfg.JobTimeout
	for _, typ := range reg.Types() {
		h, _ := reg.Lookup(typ)
		if th, ok := h.(jobs.TimeoutHandler); ok {
			longest = max(longest, th.Timeout())
		}
	}
	require.GreaterOrEqual(t, cfg.DrainBudget-longest, 30*time.Second, "room beside the longest job")

	cfg.DrainBudget = 2 * time.Minute
	err = checkDrainBudget(reg, cfg)
	require.Error(t, err)
	require.Contains(t, err.Error(), "DRAIN_BUDGET (2m) does not fit the timeout of")
	require.Contains(t, err.Error(), tasks.TypeSocialPublishInstagram+" (3m5s)")
	require.Contains(t, err.Error(), "at least 3m35s")
	require.NotContains(t, err.Error(), tasks.TypeWebScraping)
}
