package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// recordedMetrics is a Metrics that remembers what it was told.
type recordedMetrics struct {
	noMetrics
	mu       sync.Mutex
	finished map[[2]string]int
	expired  map[string]int
	ran      int
}

func (m *recordedMetrics) JobFinished(typ, outcome string, ran time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.finished[[2]string{typ, outcome}]++
	if ran >= 0 {
		m.ran++
	}
}

func (m *recordedMetrics) LeaseExpired(typ string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expired[typ]++
}

// TestReapedAttemptsAreCounted: the reaper's lost attempts count as lease
// expiries, and as lost when the job runs again or failed when this loss
// was one too many in a row, matching the jobs' states.
func TestReapedAttemptsAreCounted(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		reg := NewRegistry()
		reg.MustRegister("noop", HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) { return nil, nil }))
		m := &recordedMetrics{finished: map[[2]string]int{}, expired: map[string]int{}}
		eng, err := New(Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg,
			Logger: slog.New(slog.DiscardHandler), DisableTriggers: true, MaxLostAttempts: 3, Metrics: m})
		require.NoError(t, err)
		again, _, err := eng.Service().Create(ctx, CreateRequest{UserID: "u1", Type: "noop"})
		require.NoError(t, err)
		last, _, err := eng.Service().Create(ctx, CreateRequest{UserID: "u1", Type: "noop"})
		require.NoError(t, err)
		// A worker claimed both and died; last had lost two attempts already.
		_, err = eng.queue.Claim(ctx, 2, time.Millisecond)
		require.NoError(t, err)
		past := time.Now().UTC().Add(-time.Minute)
		for id, lost := range map[int64]int{again.ID: 0, last.ID: 2} {
			require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Where("id = ?", id).Updates(map[string]any{
				"status": models.StatusProcessing, "attempts": 1, "started_at": past, "lost_attempts": lost,
				"lease_expires_at": past.Add(time.Second), "lease_id": "dead"}).Error)
		}
		n, err := eng.reconciler.Reap(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		var rows []models.Job
		require.NoError(t, b.DB.Gorm.Order("id").Find(&rows).Error)
		require.Equal(t, models.StatusPending, rows[0].Status)
		require.Equal(t, models.StatusFailed, rows[1].Status)
		require.Equal(t, map[string]int{"noop": 2}, m.expired)
		require.Equal(t, map[[2]string]int{{"noop", OutcomeLost}: 1, {"noop", OutcomeFailed}: 1}, m.finished)
		require.Equal(t, 2, m.ran, "a lost attempt ran until its reap")
		// A second reap finds nothing and counts nothing.
		n, err = eng.reconciler.Reap(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Equal(t, map[string]int{"noop": 2}, m.expired)
	})
}

// TestFlowPrefix: a pause is labelled by its key's part before the first
// ':', never by the whole key.
func TestFlowPrefix(t *testing.T) {
	for key, want := range map[string]string{"ig:user:42": "ig", "openai": "openai", ":x": "", "meta:page:1:2": "meta"} {
		require.Equal(t, want, flowPrefix(key), key)
	}
}
