package jobs_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// bundle is one test's engine on one backend. The engine is not started:
// the tests drive its drains (and, through export_test.go, its queue and
// reconciler) by hand, so no reaper or restore runs behind their backs.
type bundle struct {
	t        *testing.T
	b        testenv.Backend
	clock    *jobs.ManualClock
	eng      *jobs.Engine
	queue    *jobs.Queue // the engine's, to set up queue states by hand
	registry *jobs.Registry
	service  *jobs.Service
	rec      *recorder
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, b testenv.Backend) *bundle {
	t.Helper()
	reg := jobs.NewRegistry()
	rec := newRecorder()
	reg.MustRegister("record", rec)
	x := &bundle{t: t, b: b, clock: jobs.NewManualClock(t0), registry: reg, rec: rec}
	x.eng = x.engine(jobs.Config{})
	x.queue = jobs.QueueOf(x.eng)
	x.service = x.eng.Service()
	return x
}

// engine builds another engine on the bundle's backend, queue, registry
// and clock (and a quiet logger unless cfg has one), shut down at the end
// of the test. Engines of one bundle share the queue, as servers do.
func (x *bundle) engine(cfg jobs.Config) *jobs.Engine {
	x.t.Helper()
	cfg.DB, cfg.Redis, cfg.RedisPrefix, cfg.Registry, cfg.Clock = x.b.DB.Gorm, x.b.Redis, x.b.Prefix, x.registry, x.clock
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	if cfg.JobTimeout == 0 {
		// A drain starts a job only if its timeout fits in the rest of
		// the budget: the tests drain with budgets of a minute.
		cfg.JobTimeout = 10 * time.Second
	}
	eng, err := jobs.New(cfg)
	require.NoError(x.t, err)
	x.t.Cleanup(func() { require.NoError(x.t, eng.Shutdown(context.Background())) })
	return eng
}

// worker returns the Worker of a new engine built from cfg (see engine).
func (x *bundle) worker(cfg jobs.Config) *jobs.Worker { return x.engine(cfg).Worker() }

func (x *bundle) create(t *testing.T, req jobs.CreateRequest) *models.Job {
	t.Helper()
	if req.UserID == "" {
		req.UserID = "user-1"
	}
	if req.Type == "" {
		req.Type = "record"
	}
	job, created, err := x.service.Create(context.Background(), req)
	require.NoError(t, err)
	require.True(t, created)
	return job
}

// seed inserts n pending jobs in batches and enqueues them, bypassing
// Create for speed.
func (x *bundle) seed(t *testing.T, n int, priority func(i int) int) []models.Job {
	t.Helper()
	ctx := context.Background()
	now := x.clock.Now()
	rows := make([]models.Job, n)
	for i := range rows {
		p := 0
		if priority != nil {
			p = priority(i)
		}
		rows[i] = models.Job{UserID: "user-1", Type: "record", Status: models.StatusPending, Priority: p,
			Payload: models.JSON(`{}`), MaxAttempts: 3, NextRunAt: now, CreatedAt: now, UpdatedAt: now}
	}
	require.NoError(t, x.b.DB.Gorm.WithContext(ctx).CreateInBatches(rows, 500).Error)
	items := make([]jobs.Item, n)
	for i, r := range rows {
		items[i] = jobs.Item{ID: r.ID, Priority: r.Priority}
	}
	require.NoError(t, x.queue.Enqueue(ctx, items...))
	return rows
}

func (x *bundle) reload(t *testing.T, id int64) models.Job {
	t.Helper()
	var j models.Job
	require.NoError(t, x.b.DB.Gorm.Take(&j, id).Error)
	return j
}

func (x *bundle) countStatus(t *testing.T, s models.Status) int64 {
	t.Helper()
	var n int64
	require.NoError(t, x.b.DB.Gorm.Model(&models.Job{}).Where("status = ?", s).Count(&n).Error)
	return n
}

// recorder is a handler that counts calls per job, notices two runs of one
// job at the same time, and lets a test script each attempt's outcome.
type recorder struct {
	mu         sync.Mutex
	calls      map[int64]int
	order      []int64
	running    map[int64]bool
	overlapped []int64
	// script, when set, decides the outcome of a call.
	script func(job *models.Job, call int) (json.RawMessage, error)
}

func newRecorder() *recorder {
	return &recorder{calls: map[int64]int{}, running: map[int64]bool{}}
}

func (r *recorder) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	r.mu.Lock()
	r.calls[job.ID]++
	call := r.calls[job.ID]
	r.order = append(r.order, job.ID)
	if r.running[job.ID] {
		r.overlapped = append(r.overlapped, job.ID)
	}
	r.running[job.ID] = true
	script := r.script
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running[job.ID] = false
		r.mu.Unlock()
	}()
	if script != nil {
		return script(job, call)
	}
	return json.RawMessage(`{"ok":true}`), nil
}

func (r *recorder) snapshot() (map[int64]int, []int64, []int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := make(map[int64]int, len(r.calls))
	for k, v := range r.calls {
		calls[k] = v
	}
	return calls, append([]int64(nil), r.order...), append([]int64(nil), r.overlapped...)
}
