package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// TestReaperWakesWhenTheEarliestLeaseEnds: a job whose worker died (its
// row processing, its lease ending 300 ms from now) is back in the queue
// soon after its lease ends, not half a lease (here 10 s) later.
func TestReaperWakesWhenTheEarliestLeaseEnds(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		reg := NewRegistry()
		reg.MustRegister("noop", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		eng, err := New(Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg,
			Logger: slog.New(slog.DiscardHandler), LeaseDuration: 20 * time.Second, DisableTriggers: true})
		require.NoError(t, err)
		job, _, err := eng.Service().Create(ctx, CreateRequest{UserID: "u1", Type: "noop"})
		require.NoError(t, err)
		// A worker claimed it and died.
		_, err = eng.queue.Claim(ctx, 1, 300*time.Millisecond)
		require.NoError(t, err)
		now := time.Now().UTC()
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", job.ID).Updates(map[string]any{
			"status": models.StatusProcessing, "attempts": 1, "started_at": now,
			"lease_expires_at": now.Add(300 * time.Millisecond), "lease_id": "dead"}).Error)
		require.NoError(t, eng.Start(ctx))
		t.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = eng.Shutdown(sctx)
		})
		start := time.Now()
		testenv.WaitFor(t, 3*time.Second, "the reaper to return the job", func() bool {
			var row models.Job
			require.NoError(t, b.DB.Gorm.First(&row, job.ID).Error)
			return row.Status == models.StatusPending
		})
		t.Logf("back in the queue %s after the test started waiting (lease ended 300 ms after the claim)", time.Since(start).Round(time.Millisecond))
	})
}
