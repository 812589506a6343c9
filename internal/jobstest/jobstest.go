// Package jobstest starts job engines for the tests of the packages built
// on package jobs. (The tests of package jobs itself cannot import it.)
package jobstest

import (
	"context"
	"testing"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// TestJobTimeout is the timeout of the jobs of an engine Start builds when
// its config sets none.
const TestJobTimeout = 5 * time.Second

// Start builds an engine from cfg and starts it, failing the test on an
// error; the engine shuts down when the test ends. The test drains its
// Worker itself unless cfg asks for InProcess. A zero JobTimeout is
// TestJobTimeout: a drain starts a job only if its timeout fits in the
// rest of the budget, and the tests drain with budgets of seconds.
func Start(t testing.TB, cfg jobs.Config) *jobs.Engine {
	t.Helper()
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = TestJobTimeout
	}
	eng, err := jobs.New(cfg)
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatalf("start the engine: %v", err)
	}
	t.Cleanup(func() {
		if err := eng.Shutdown(context.Background()); err != nil {
			t.Errorf("shut the engine down: %v", err)
		}
	})
	return eng
}
