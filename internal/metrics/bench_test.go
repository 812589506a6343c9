package metrics_test

import (
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/metrics"
	"github.com/jobhook/jobhook/jobs"
)

// BenchmarkPerJob measures what the metrics add to one drained job: its
// create, claim (with its queue wait), outcome (with its duration) and its
// share of a completer batch. Compare with BenchmarkDrain's time per job.
func BenchmarkPerJob(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.JobsCreated("noop", 1)
			m.JobClaimed("noop", 3*time.Millisecond)
			m.JobFinished("noop", jobs.OutcomeCompleted, 2*time.Millisecond)
			m.CompleterBatch(16, 1)
		}
	})
}
