package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// River's tuning for the drain and latency phases: 50 workers, a fetch at
// most every millisecond (its default is 100 ms, which caps throughput),
// and a poll every 10 ms besides LISTEN/NOTIFY (its default is 1 s).
const (
	riverFetchCooldown     = time.Millisecond
	riverFetchPollInterval = 10 * time.Millisecond
)

// noopArgs are the River no-op job's arguments.
type noopArgs struct {
	T int64 `json:"t,omitempty"`
}

// Kind names the job kind.
func (noopArgs) Kind() string { return noopType }

// noopWorker is River's no-op worker.
type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	p *probe
}

// Work reports the job's start to the probe.
func (w *noopWorker) Work(_ context.Context, job *river.Job[noopArgs]) error {
	w.p.hit(job.Args.T)
	return nil
}

// riverBench drives River v0.51 with the pgx v5 driver: an insert-only
// client for the create phases, and a fresh working client for each drain
// and latency phase.
type riverBench struct {
	env         *env
	p           probe
	pool        *pgxpool.Pool
	inserter    *river.Client[pgx.Tx]
	workers     *river.Workers
	concurrency int
	log         *slog.Logger
}

func newRiver(ctx context.Context, e *env, o options, log *slog.Logger) (*riverBench, error) {
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return nil, fmt.Errorf("river: parse URL: %w", err)
	}
	cfg.MaxConns = int32(o.pgConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("river: connect: %w", err)
	}
	r := &riverBench{env: e, pool: pool, workers: river.NewWorkers(), concurrency: o.concurrency, log: log}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: log})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("river: %w", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		pool.Close()
		return nil, fmt.Errorf("river: migrate: %w", err)
	}
	river.AddWorker(r.workers, &noopWorker{p: &r.p})
	if r.inserter, err = river.NewClient(riverpgxv5.New(pool), &river.Config{Workers: r.workers, Logger: log}); err != nil {
		pool.Close()
		return nil, fmt.Errorf("river: %w", err)
	}
	return r, nil
}

func (r *riverBench) name() string  { return "river" }
func (r *riverBench) probe() *probe { return &r.p }

// counter is nil: only commits are counted for River.
func (*riverBench) counter() *counter { return nil }

func (r *riverBench) insert(ctx context.Context, sentNanos int64) error {
	_, err := r.inserter.Insert(ctx, noopArgs{T: sentNanos}, nil)
	return err
}

// batch times InsertMany (one multi-row INSERT per batch) and
// InsertManyFast (COPY FROM per batch).
func (r *riverBench) batch(ctx context.Context, n, size int) ([]timed, error) {
	many := func(ctx context.Context, params []river.InsertManyParams) error {
		_, err := r.inserter.InsertMany(ctx, params)
		return err
	}
	fast := func(ctx context.Context, params []river.InsertManyParams) error {
		_, err := r.inserter.InsertManyFast(ctx, params)
		return err
	}
	var out []timed
	for _, api := range []struct {
		name string
		call func(context.Context, []river.InsertManyParams) error
	}{{metricBatchMany, many}, {metricBatchCopy, fast}} {
		if err := r.reset(ctx); err != nil {
			return nil, err
		}
		start := time.Now()
		if err := r.insertBatches(ctx, n, size, api.call); err != nil {
			return nil, fmt.Errorf("%s: %w", api.name, err)
		}
		out = append(out, timed{api: api.name, d: time.Since(start)})
	}
	return out, nil
}

func (r *riverBench) insertBatches(ctx context.Context, n, size int, call func(context.Context, []river.InsertManyParams) error) error {
	params := make([]river.InsertManyParams, 0, size)
	for left := n; left > 0; left -= len(params) {
		params = params[:0]
		for range min(size, left) {
			params = append(params, river.InsertManyParams{Args: noopArgs{}})
		}
		if err := call(ctx, params); err != nil {
			return err
		}
	}
	return nil
}

// preload inserts the drain's jobs with COPY.
func (r *riverBench) preload(ctx context.Context, m int) error {
	return r.insertBatches(ctx, m, 5000, func(ctx context.Context, params []river.InsertManyParams) error {
		_, err := r.inserter.InsertManyFast(ctx, params)
		return err
	})
}

// drain starts a working client and waits until every handler has run and
// River's completer has recorded every job as completed.
func (r *riverBench) drain(ctx context.Context, m int) (time.Duration, error) {
	done := r.p.arm(m, false)
	start := time.Now()
	stop, err := r.startWorkers(ctx)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := waitDone(ctx, done, 10*time.Minute); err != nil {
		return 0, err
	}
	err = waitFor(ctx, 2*time.Millisecond, time.Minute, func(ctx context.Context) (bool, error) {
		var open bool
		err := r.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM river_job WHERE state <> 'completed')").Scan(&open)
		return !open, err
	})
	if err != nil {
		return 0, fmt.Errorf("wait for completed rows: %w", err)
	}
	return time.Since(start), nil
}

func (r *riverBench) startWorkers(ctx context.Context) (func(), error) {
	client, err := river.NewClient(riverpgxv5.New(r.pool), &river.Config{
		Workers:           r.workers,
		Logger:            r.log,
		FetchCooldown:     riverFetchCooldown,
		FetchPollInterval: riverFetchPollInterval,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: r.concurrency}},
	})
	if err != nil {
		return nil, fmt.Errorf("river: %w", err)
	}
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("river: start: %w", err)
	}
	return func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := client.Stop(stopCtx); err != nil {
			progress("river: stop: " + err.Error())
		}
	}, nil
}

func (r *riverBench) reset(ctx context.Context) error {
	return r.env.truncate(ctx, "river_job")
}

func (r *riverBench) close() { r.pool.Close() }
