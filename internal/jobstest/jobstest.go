// Package jobstest starts job engines for the tests of the packages built
// on package jobs. (The tests of package jobs itself cannot import it.)
package jobstest

import (
	"context"
	"testing"

	"github.com/jobhook/jobhook/jobs"
)

// Start builds an engine from cfg and starts it, failing the test on an
// error; the engine shuts down when the test ends. The test drains its
// Worker itself unless cfg asks for InProcess.
func Start(t testing.TB, cfg jobs.Config) *jobs.Engine {
	t.Helper()
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
