package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// beatRig is one heartbeat test's engine: a worker whose "block" handler
// runs until released (or until its context ends, when it says so), and
// the heartbeat's renewals counted.
type beatRig struct {
	t      *testing.T
	b      testenv.Backend
	queue  *redisQueue
	svc    *Service
	w      *Worker
	drains sync.WaitGroup

	mu sync.Mutex
	// release, closed by free, lets the handlers return.
	release  chan struct{}
	released bool
	// started and ended hold, per job, when its handler began and when
	// its context was cancelled (zero: it was released).
	started map[int64]time.Time
	ended   map[int64]time.Time
	// batches holds the number of fences of each renewal.
	batches []int
	// zadds counts the Redis renewals (ZADD on the processing set).
	zadds atomic.Int64
	// maxTickers is the most ticker goroutines seen at once.
	maxTickers atomic.Int32
}

func newBeatRig(t *testing.T, b testenv.Backend, cfg workerConfig) *beatRig {
	r := &beatRig{t: t, b: b, release: make(chan struct{}), started: map[int64]time.Time{}, ended: map[int64]time.Time{}}
	quiet := slog.New(slog.DiscardHandler)
	r.queue = newRedisQueue(b.Redis, b.Prefix, nil)
	b.Redis.AddHook(zaddCounter{n: &r.zadds})
	reg := NewRegistry()
	reg.MustRegister("block", HandlerFunc(func(ctx context.Context, job *models.Job) (json.RawMessage, error) {
		r.mu.Lock()
		r.started[job.ID] = time.Now()
		release := r.release
		r.mu.Unlock()
		select {
		case <-release:
			return json.RawMessage(`{}`), nil
		case <-ctx.Done():
			r.mu.Lock()
			r.ended[job.ID] = time.Now()
			r.mu.Unlock()
			return nil, ctx.Err()
		}
	}))
	r.svc = newService(serviceConfig{DB: b.DB.Gorm, Queue: r.queue, Registry: reg, Logger: quiet})
	// The worker's warnings are shown when the test fails.
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	cfg.DB, cfg.Queue, cfg.Registry = b.DB.Gorm, r.queue, reg
	if cfg.JobTimeout == 0 {
		cfg.JobTimeout = 10 * time.Second // fits in the drains' budget
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r.w = newWorker(cfg)
	real := r.w.beat.renew
	r.w.beat.renew = func(ctx context.Context, fences []store.Fence, until time.Time) ([]int64, error) {
		r.mu.Lock()
		r.batches = append(r.batches, len(fences))
		r.mu.Unlock()
		if n := r.w.beat.tickers.Load(); n > r.maxTickers.Load() {
			r.maxTickers.Store(n)
		}
		return real(ctx, fences, until)
	}
	// A test that fails midway still ends its drains before the
	// backend closes.
	t.Cleanup(func() {
		r.free()
		r.drains.Wait()
	})
	return r
}

// free lets the running handlers return (once).
func (r *beatRig) free() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.released {
		r.released = true
		close(r.release)
	}
}

// again starts a new round: handlers block again and none has started.
func (r *beatRig) again() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release, r.released = make(chan struct{}), false
	r.started = map[int64]time.Time{}
}

// create adds n "block" jobs.
func (r *beatRig) create(n int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		job, _, err := r.svc.Create(context.Background(), CreateRequest{UserID: "u1", Type: "block"})
		require.NoError(r.t, err)
		ids[i] = job.ID
	}
	return ids
}

// drain runs drains in the background; wait returns their summaries
// added up.
func (r *beatRig) drain(drains int) (wait func() DrainSummary) {
	out := make(chan DrainSummary, drains)
	for range drains {
		r.drains.Add(1)
		go func() {
			defer r.drains.Done()
			s, err := r.w.Drain(context.Background(), time.Minute)
			if err != nil {
				r.t.Errorf("drain: %v", err)
			}
			out <- s
		}()
	}
	return func() DrainSummary {
		var sum DrainSummary
		for range drains {
			s := <-out
			sum.Completed += s.Completed
			sum.Skipped += s.Skipped
			sum.Claimed += s.Claimed
		}
		return sum
	}
}

func (r *beatRig) waitStarted(n int) {
	testenv.WaitFor(r.t, 10*time.Second, "the handlers to start", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.started) == n
	})
}

func (r *beatRig) cancelledAt(id int64) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.ended[id]
	return at, ok
}

func (r *beatRig) renewals() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.batches...)
}

func (r *beatRig) leaseOf(id int64) time.Time {
	var j models.Job
	require.NoError(r.t, r.b.DB.Gorm.Take(&j, id).Error)
	require.NotNil(r.t, j.LeaseExpiresAt, "job %d has a lease", id)
	return *j.LeaseExpiresAt
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// zaddCounter counts the successful calls of the lease-renewal script.
type zaddCounter struct {
	n *atomic.Int64
}

func (z zaddCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) { return next(ctx, network, addr) }
}

func (z zaddCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if args := cmd.Args(); err == nil && len(args) > 1 && strings.EqualFold(cmd.Name(), "evalsha") && args[1] == renewScript.Hash() {
			z.n.Add(1)
		}
		if args := cmd.Args(); err == nil && len(args) > 1 && strings.EqualFold(cmd.Name(), "eval") && args[1] == luaLib+renewBody {
			z.n.Add(1)
		}
		return err
	}
}

func (z zaddCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestHeartbeatRenewsEveryLeaseInOneStatementPerTick runs 12 jobs at once
// in three drains of one worker: one ticker renews all their leases, one
// renewal statement and one Redis call per tick (the heartbeat once ran
// one of each per job), and every lease moves on.
func TestHeartbeatRenewsEveryLeaseInOneStatementPerTick(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		const n = 12
		lease := 600 * time.Millisecond
		r := newBeatRig(t, b, workerConfig{Concurrency: n / 3, LeaseDuration: lease})
		ids := r.create(n)
		began := time.Now()
		wait := r.drain(3)
		r.waitStarted(n)
		first := map[int64]time.Time{}
		for _, id := range ids {
			first[id] = r.leaseOf(id)
		}
		testenv.WaitFor(t, 10*time.Second, "three renewals of every lease at once, in the database and in Redis", func() bool {
			full := 0
			for _, size := range r.renewals() {
				if size == n {
					full++
				}
			}
			return full >= 3 && r.zadds.Load() >= 3
		})
		for _, id := range ids {
			require.True(t, r.leaseOf(id).After(first[id]), "job %d: lease renewed", id)
		}
		r.free()
		sum := wait()
		require.Equal(t, n, sum.Completed)

		renewals := r.renewals()
		for _, size := range renewals {
			require.LessOrEqual(t, size, n)
		}
		// One renewal per tick: at most the ticks that fit in the time
		// the jobs ran (one per job would be 12 times more).
		ticks := int(time.Since(began)/(lease/3)) + 2
		require.LessOrEqual(t, len(renewals), ticks, "one statement per tick, not per job")
		require.LessOrEqual(t, r.zadds.Load(), int64(len(renewals)), "one Redis call per tick")
		require.EqualValues(t, 1, r.maxTickers.Load(), "one ticker for the three drains")
		testenv.WaitFor(t, 5*time.Second, "the ticker to stop", func() bool { return r.w.beat.tickers.Load() == 0 })
	})
}

// TestHeartbeatCancelsOnlyTheJobsThatMovedOn: of four running jobs, one is
// reaped and one cancelled meanwhile; the next tick cancels their handlers
// and drops their outcomes, while the other two keep their leases and
// complete.
func TestHeartbeatCancelsOnlyTheJobsThatMovedOn(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		lease := 600 * time.Millisecond
		r := newBeatRig(t, b, workerConfig{Concurrency: 4, LeaseDuration: lease})
		ids := r.create(4)
		wait := r.drain(1)
		r.waitStarted(4)
		reaped, cancelled := ids[1], ids[2]
		db := b.DB.Gorm
		require.NoError(t, db.Model(&models.Job{}).Where("id = ?", reaped).
			Updates(map[string]any{"status": models.StatusPending, "lease_id": nil, "lease_expires_at": nil}).Error)
		require.NoError(t, db.Model(&models.Job{}).Where("id = ?", cancelled).Update("status", models.StatusCancelled).Error)
		testenv.WaitFor(t, 10*time.Second, "the two handlers to be cancelled", func() bool {
			_, a := r.cancelledAt(reaped)
			_, c := r.cancelledAt(cancelled)
			return a && c
		})
		// The others are renewed by a later tick and still run.
		before := len(r.renewals())
		testenv.WaitFor(t, 10*time.Second, "two more renewals", func() bool { return len(r.renewals()) >= before+2 })
		for _, id := range []int64{ids[0], ids[3]} {
			_, gone := r.cancelledAt(id)
			require.False(t, gone, "job %d keeps running", id)
		}
		require.Equal(t, 2, r.renewals()[len(r.renewals())-1], "the lost leases are no longer renewed")
		r.free()
		sum := wait()
		require.Equal(t, 2, sum.Completed)
		require.Equal(t, 2, sum.Skipped, "the lost outcomes are dropped")
		var rows []models.Job
		require.NoError(t, db.Where("id IN ?", ids).Order("id").Find(&rows).Error)
		require.Equal(t, []models.Status{models.StatusCompleted, models.StatusPending, models.StatusCancelled, models.StatusCompleted},
			[]models.Status{rows[0].Status, rows[1].Status, rows[2].Status, rows[3].Status})
	})
}

// TestHeartbeatLosesTheLeaseBeforeItRunsOutWhenRenewalsFail: when every
// renewal fails, fast or by hanging, the handler is cancelled before its
// lease runs out (but not at the first failure), and its outcome is
// dropped: the reaper, not this worker, owns the job afterwards.
func TestHeartbeatLosesTheLeaseBeforeItRunsOutWhenRenewalsFail(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(ctx context.Context) error
	}{
		{"failing", func(context.Context) error { return errors.New("connection refused") }},
		{"hanging", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.Run(t, func(t *testing.T, b testenv.Backend) {
				lease := 900 * time.Millisecond
				r := newBeatRig(t, b, workerConfig{Concurrency: 1, LeaseDuration: lease})
				var calls atomic.Int64
				r.w.beat.renew = func(ctx context.Context, _ []store.Fence, _ time.Time) ([]int64, error) {
					calls.Add(1)
					return nil, tc.fail(ctx)
				}
				ids := r.create(1)
				wait := r.drain(1)
				sum := wait() // the handler runs until it is cancelled
				require.Equal(t, 1, sum.Skipped, "the outcome is dropped")
				require.Zero(t, sum.Completed)
				r.mu.Lock()
				start, end := r.started[ids[0]], r.ended[ids[0]]
				r.mu.Unlock()
				require.False(t, end.IsZero(), "the handler was cancelled")
				ran := end.Sub(start)
				require.Less(t, ran, lease, "cancelled before the lease ran out")
				require.GreaterOrEqual(t, ran, lease/3, "not before the first renewal was due")
				require.GreaterOrEqual(t, calls.Load(), int64(1))
				var row models.Job
				require.NoError(t, b.DB.Gorm.Take(&row, ids[0]).Error)
				require.Equal(t, models.StatusProcessing, row.Status, "left for the reaper")
			})
		})
	}
}

// TestHeartbeatTickerRunsOnlyWhileJobsRun: no ticker before the first job,
// one while jobs run, none once the drain is over, one again for the next
// drain, and none once Shutdown returned.
func TestHeartbeatTickerRunsOnlyWhileJobsRun(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		r := newBeatRig(t, b, workerConfig{Concurrency: 2, LeaseDuration: 600 * time.Millisecond})
		beat := r.w.beat
		require.Zero(t, beat.tickers.Load(), "idle: no ticker")
		r.create(2)
		wait := r.drain(1)
		r.waitStarted(2)
		require.EqualValues(t, 1, beat.tickers.Load())
		r.free()
		require.Equal(t, 2, wait().Completed)
		testenv.WaitFor(t, 5*time.Second, "the ticker to stop", func() bool { return beat.tickers.Load() == 0 })

		// A second drain starts it again; Shutdown ends it.
		r.again()
		r.create(1)
		wait = r.drain(1)
		r.waitStarted(1)
		require.EqualValues(t, 1, beat.tickers.Load())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		r.w.Shutdown(ctx) // the grace period ends: the handler is cancelled
		require.Zero(t, beat.tickers.Load(), "no ticker once Shutdown returned")
		wait()
	})
}

// TestHeartbeatLossRacesWithHandlersReturning registers and deregisters
// leases while ticks find every one of them lost: for each lease, remove
// reports it lost exactly when its handler was cancelled, and a handler
// is cancelled at most once, never after remove answered (run with
// -race).
func TestHeartbeatLossRacesWithHandlersReturning(t *testing.T) {
	h := newHeartbeat(3*time.Millisecond, SystemClock{}, nil, nil, slog.New(slog.DiscardHandler))
	h.renew = func(context.Context, []store.Fence, time.Time) ([]int64, error) { return nil, nil } // all moved on
	const n = 1000
	var cancels [n]atomic.Int32
	var lost [n]bool
	stop := make(chan struct{})
	var ticking sync.WaitGroup
	for range 2 { // ticks beside the ticker's own
		ticking.Add(1)
		go func() {
			defer ticking.Done()
			for {
				select {
				case <-stop:
					return
				default:
					h.tick(context.Background())
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				l := h.add(store.Fence{ID: int64(i), Attempt: 1}, func(error) { cancels[i].Add(1) }, time.Time{})
				for range i % 5 {
					time.Sleep(time.Duration(i%3) * 100 * time.Microsecond)
				}
				lost[i] = h.remove(l)
				if !lost[i] && cancels[i].Load() != 0 {
					t.Errorf("lease %d: cancelled but not reported lost", i)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	ticking.Wait()
	h.wait()
	require.Zero(t, h.tickers.Load())
	nLost := 0
	for i := range n {
		want := int32(0)
		if lost[i] {
			want = 1
			nLost++
		}
		require.Equal(t, want, cancels[i].Load(), "lease %d: lost %v", i, lost[i])
	}
	require.Positive(t, nLost, "some leases were lost")
	require.Less(t, nLost, n, "some handlers returned first")
}

// TestHeartbeatANewClaimLosesTheOldOne: a job registered again under the
// same id (claimed again after it was reaped) makes the older claim lost
// at once; removing the older one leaves the newer registered.
func TestHeartbeatANewClaimLosesTheOldOne(t *testing.T) {
	h := newHeartbeat(time.Hour, SystemClock{}, nil, nil, slog.New(slog.DiscardHandler))
	var oldCancelled, newCancelled atomic.Bool
	older := h.add(store.Fence{ID: 7, Attempt: 1}, func(error) { oldCancelled.Store(true) }, time.Time{})
	newer := h.add(store.Fence{ID: 7, Attempt: 2}, func(error) { newCancelled.Store(true) }, time.Time{})
	require.True(t, oldCancelled.Load())
	require.True(t, h.remove(older), "the older claim is lost")
	require.EqualValues(t, 1, h.tickers.Load(), "the newer claim still runs")
	require.False(t, h.remove(newer))
	require.False(t, newCancelled.Load())
	h.wait()
	require.Zero(t, h.tickers.Load())
}
