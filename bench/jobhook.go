package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/migrations"
	"github.com/jobhook/jobhook/models"
)

// noopType is the no-op job type of every system.
const noopType = "bench_noop"

// drainBudget is the budget of one jobhook drain: room for a whole
// phase's backlog (the no-op jobs fit any budget; POST /api/workers gives
// handlers.DefaultDrainBudget).
const drainBudget = 2 * time.Minute

// jobhookBench drives jobhook's engine through its public API: an Engine
// (jobs.New) whose Service creates and whose Worker's Drain runs jobs,
// wired as `jobhook serve` wires it (a reaper and reconciler in every
// drain; for the latency phase, the in-process runner kicked after every
// create).
type jobhookBench struct {
	env   *env
	p     probe
	db    *gorm.DB
	rdb   *redis.Client
	o     options
	reg   *jobs.Registry
	eng   *jobs.Engine
	log   *slog.Logger
	count counter
}

func newJobhook(ctx context.Context, e *env, o options, log *slog.Logger) (*jobhookBench, error) {
	db, err := gorm.Open(postgres.Open(e.dbURL), &gorm.Config{
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("jobhook: open Postgres: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("jobhook: %w", err)
	}
	sqlDB.SetMaxOpenConns(o.pgConns)
	sqlDB.SetMaxIdleConns(o.pgConns)
	if _, err := migrations.Up(ctx, sqlDB, migrations.Postgres, log); err != nil {
		return nil, fmt.Errorf("jobhook: migrate: %w", err)
	}
	j := &jobhookBench{env: e, db: db, rdb: e.newRedis(o.pgConns), o: o, log: log}
	if err := j.count.watchGorm(db); err != nil {
		return nil, fmt.Errorf("jobhook: %w", err)
	}
	j.count.watchRedis(j.rdb)
	j.reg = jobs.NewRegistry()
	j.reg.MustRegister(noopType, jobs.HandlerFunc(func(_ context.Context, job *models.Job) (json.RawMessage, error) {
		var p struct {
			T int64 `json:"t"`
		}
		_ = json.Unmarshal(job.Payload, &p)
		j.p.hit(p.T)
		return nil, nil
	}))
	if j.eng, err = j.engine(false); err != nil {
		return nil, err
	}
	return j, nil
}

// engine builds an Engine; inProcess adds the in-process runner (a drain
// at once after every create, and every second).
func (j *jobhookBench) engine(inProcess bool) (*jobs.Engine, error) {
	eng, err := jobs.New(jobs.Config{
		DB: j.db, Redis: j.rdb, RedisPrefix: jobhookPrefix, Registry: j.reg, Logger: j.log,
		Concurrency: j.o.concurrency, InProcess: inProcess, DrainBudget: drainBudget,
	})
	if err != nil {
		return nil, fmt.Errorf("jobhook: %w", err)
	}
	return eng, nil
}

func (j *jobhookBench) name() string  { return "jobhook" }
func (j *jobhookBench) probe() *probe { return &j.p }

func (j *jobhookBench) counter() *counter { return &j.count }

func (j *jobhookBench) insert(ctx context.Context, sentNanos int64) error {
	_, _, err := j.eng.Service().Create(ctx, jobs.CreateRequest{UserID: "bench", Type: noopType, Payload: payload(sentNanos)})
	return err
}

// batch times Service.CreateMany (one COPY and one enqueue
// per batch), in batches of size, reported beside River's InsertMany.
func (j *jobhookBench) batch(ctx context.Context, n, size int) ([]timed, error) {
	size = min(size, jobs.MaxBatchSize)
	reqs := make([]jobs.CreateRequest, 0, size)
	start := time.Now()
	for left := n; left > 0; left -= len(reqs) {
		reqs = reqs[:0]
		for range min(size, left) {
			reqs = append(reqs, jobs.CreateRequest{UserID: "bench", Type: noopType, Payload: payload(0)})
		}
		if _, err := j.eng.Service().CreateMany(ctx, reqs); err != nil {
			return nil, fmt.Errorf("CreateMany: %w", err)
		}
	}
	return []timed{{api: metricBatchMany, d: time.Since(start)}}, nil
}

func (j *jobhookBench) preload(ctx context.Context, m int) error {
	_, err := createParallel(ctx, j, m, 16)
	return err
}

// drain calls Worker.Drain back to back, as QStash calls POST
// /api/workers when a drain ends with work left, until every job is done.
func (j *jobhookBench) drain(ctx context.Context, m int) (time.Duration, error) {
	j.p.arm(m, false)
	start := time.Now()
	completed := 0
	for completed < m {
		sum, err := j.eng.Worker().Drain(ctx, drainBudget)
		if err != nil {
			return 0, err
		}
		completed += sum.Completed
		if sum.Claimed == 0 && sum.Remaining == 0 && completed < m {
			return 0, fmt.Errorf("queue empty after %d of %d jobs completed", completed, m)
		}
	}
	return time.Since(start), nil
}

// startWorkers starts an Engine with the in-process runner
// (INPROCESS_WORKER's loop): a drain at once after every create, and
// every second. stop shuts it down and puts a fresh engine in its place
// (a Worker, once shut down, claims no more).
func (j *jobhookBench) startWorkers(ctx context.Context) (func(), error) {
	eng, err := j.engine(true)
	if err != nil {
		return nil, err
	}
	if err := eng.Start(ctx); err != nil {
		return nil, fmt.Errorf("jobhook: %w", err)
	}
	idle := j.eng
	j.eng = eng
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := eng.Shutdown(sctx); err != nil {
			progress("jobhook: shutdown: " + err.Error())
		}
		j.eng = idle
	}, nil
}

func (j *jobhookBench) reset(ctx context.Context) error {
	if err := j.env.truncate(ctx, "jobs", "job_attempts"); err != nil {
		return err
	}
	return j.env.resetRedis(ctx)
}

func (j *jobhookBench) close() {
	_ = j.rdb.Close()
	if sqlDB, err := j.db.DB(); err == nil {
		_ = sqlDB.Close()
	}
}
