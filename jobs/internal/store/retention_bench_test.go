package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// BenchmarkRetentionBatch measures one retention statement (500 top-level
// jobs, the batch the reconcile pass deletes at most once a minute) on a
// table holding 20,000 old finished jobs (and 5,000 young ones), each
// with one attempt. Reports ms/batch: the length of its lock.
func BenchmarkRetentionBatch(b *testing.B) {
	testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
		ctx := context.Background()
		now := time.Now().UTC()
		seed := func(n int, age time.Duration) {
			rows := make([]models.Job, n)
			for i := range rows {
				at := now.Add(-age)
				rows[i] = models.Job{UserID: "u", Type: "noop", Status: models.StatusCompleted, Payload: models.JSON(`{}`), MaxAttempts: 3,
					NextRunAt: at, CreatedAt: at, UpdatedAt: at, CompletedAt: &at}
			}
			if err := be.DB.Gorm.CreateInBatches(rows, 1000).Error; err != nil {
				b.Fatal(err)
			}
			attempts := make([]models.JobAttempt, n)
			for i, r := range rows {
				attempts[i] = models.JobAttempt{JobID: r.ID, Attempt: 1, FinishedAt: now.Add(-age), Outcome: "completed", CreatedAt: now.Add(-age)}
			}
			if err := be.DB.Gorm.CreateInBatches(attempts, 1000).Error; err != nil {
				b.Fatal(err)
			}
		}
		seed(20000, 10*24*time.Hour)
		seed(5000, time.Hour)
		st := store.New(be.DB.Gorm)
		before := now.Add(-7 * 24 * time.Hour)
		b.ResetTimer()
		var total time.Duration
		for i := 0; i < b.N; i++ {
			start := time.Now()
			n, err := st.DeleteFinished(ctx, []models.Status{models.StatusCompleted}, before, 500)
			total += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if n != 500 {
				b.Fatalf("deleted %d, want 500", n)
			}
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/batch")
	})
}
