package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// BenchmarkRetentionBatch measures one reconcile pass with its retention
// and artifact sweep: 500 old completed jobs deleted, each releasing the
// image it holds, and one step of the sweep's lap (5,000 jobs' payloads
// and results read for image names, the names looked up, a lap's start or
// end, up to 500 files deleted), on a table of 20,000 old and 5,000 young
// image jobs whose results name their image. Reports ms/pass (every part
// of the pass; no pending jobs to reconcile) and files deleted per pass.
func BenchmarkRetentionBatch(b *testing.B) {
	testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
		ctx := context.Background()
		now := time.Now().UTC()
		files := newMemFiles()
		seq := 0
		seed := func(n int, age time.Duration) {
			at := now.Add(-age)
			rows := make([]models.Job, n)
			for i := range rows {
				seq++
				rows[i] = models.Job{UserID: "u", Type: "noop", Status: models.StatusCompleted, MaxAttempts: 3,
					Payload:   models.JSON(`{"prompt":"A lighthouse at dawn, watercolour","size":"1024x1024"}`),
					Result:    models.JSON(fmt.Sprintf(`{"images":[{"url":"https://jobs.example.com/files/images/img-%d.png"}],"model":"gpt-image-1"}`, seq)),
					NextRunAt: at, CreatedAt: at, UpdatedAt: at, CompletedAt: &at}
			}
			if err := be.DB.Gorm.CreateInBatches(rows, 1000).Error; err != nil {
				b.Fatal(err)
			}
			arts := make([]map[string]any, n)
			for i, r := range rows {
				name := fmt.Sprintf("img-%d.png", seq-n+i+1)
				files.files[name] = true
				arts[i] = map[string]any{"name": name, "job_id": r.ID, "created_at": at}
			}
			if err := be.DB.Gorm.Table("job_artifacts").CreateInBatches(arts, 1000).Error; err != nil {
				b.Fatal(err)
			}
		}
		seed(20000, 10*24*time.Hour)
		seed(5000, time.Hour)
		eng, err := jobs.New(jobs.Config{DB: be.DB.Gorm, Redis: be.Redis, RedisPrefix: be.Prefix, Registry: jobs.NewRegistry(), Logger: quiet(), Artifacts: files})
		if err != nil {
			b.Fatal(err)
		}
		defer eng.Shutdown(ctx)
		rec := jobs.ReconcilerOf(eng)
		b.ResetTimer()
		var total time.Duration
		var removed int
		for i := 0; i < b.N; i++ {
			start := time.Now()
			res, err := rec.Run(ctx)
			total += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if res.Deleted != 500 && i < 40 {
				b.Fatalf("deleted %d, want 500", res.Deleted)
			}
			removed += res.Artifacts.Removed
		}
		b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/pass")
		b.ReportMetric(float64(removed)/float64(b.N), "files/pass")
	})
}
