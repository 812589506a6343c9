package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// asynq's tuning for the drain and latency phases: 50 concurrent handlers
// and a look for new tasks every millisecond when the queue is empty (its
// default is 1 s).
const asynqTaskCheckInterval = time.Millisecond

// asynqBench drives asynq v0.26 on its own Redis client (pool of
// -pg-conns connections, as jobhook's): a Client for inserts, and a fresh
// Server for each drain and latency phase.
type asynqBench struct {
	env         *env
	p           probe
	rdb         *redis.Client
	client      *asynq.Client
	inspector   *asynq.Inspector
	concurrency int
}

func newAsynq(e *env, o options) *asynqBench {
	rdb := e.newRedis(o.pgConns)
	return &asynqBench{
		env: e, rdb: rdb, concurrency: o.concurrency,
		client:    asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
	}
}

func (a *asynqBench) name() string  { return "asynq" }
func (a *asynqBench) probe() *probe { return &a.p }

// counter is nil: only commits are counted for Asynq.
func (*asynqBench) counter() *counter { return nil }

func (a *asynqBench) insert(ctx context.Context, sentNanos int64) error {
	_, err := a.client.EnqueueContext(ctx, asynq.NewTask(noopType, payload(sentNanos)))
	return err
}

// batch reports no batch API: asynq enqueues one task per call.
func (a *asynqBench) batch(context.Context, int, int) ([]timed, error) { return nil, nil }

func (a *asynqBench) preload(ctx context.Context, m int) error {
	_, err := createParallel(ctx, a, m, 16)
	return err
}

// drain starts a Server and waits until every handler has run and the
// queue holds no pending or active task.
func (a *asynqBench) drain(ctx context.Context, m int) (time.Duration, error) {
	done := a.p.arm(m, false)
	start := time.Now()
	stop, err := a.startWorkers(ctx)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := waitDone(ctx, done, 10*time.Minute); err != nil {
		return 0, err
	}
	err = waitFor(ctx, 2*time.Millisecond, time.Minute, func(context.Context) (bool, error) {
		info, err := a.inspector.GetQueueInfo("default")
		if err != nil {
			return false, err
		}
		return info.Pending+info.Active+info.Retry == 0, nil
	})
	if err != nil {
		return 0, fmt.Errorf("wait for an empty queue: %w", err)
	}
	return time.Since(start), nil
}

func (a *asynqBench) startWorkers(context.Context) (func(), error) {
	srv := asynq.NewServerFromRedisClient(a.rdb, asynq.Config{
		Concurrency:       a.concurrency,
		TaskCheckInterval: asynqTaskCheckInterval,
		LogLevel:          asynq.WarnLevel,
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(noopType, func(_ context.Context, t *asynq.Task) error {
		var p struct {
			T int64 `json:"t"`
		}
		_ = json.Unmarshal(t.Payload(), &p)
		a.p.hit(p.T)
		return nil
	})
	if err := srv.Start(mux); err != nil {
		return nil, fmt.Errorf("asynq: start: %w", err)
	}
	return srv.Shutdown, nil
}

// reset deletes asynq's keys and starts a new Client: a Client registers
// a queue in Redis only on its first enqueue into it.
func (a *asynqBench) reset(ctx context.Context) error {
	if err := a.env.resetRedis(ctx); err != nil {
		return err
	}
	_ = a.client.Close()
	a.client = asynq.NewClientFromRedisClient(a.rdb)
	return nil
}

func (a *asynqBench) close() {
	_ = a.client.Close()
	_ = a.rdb.Close()
}
